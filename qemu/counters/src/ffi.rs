//! The part of QEMU's plugin API (`include/qemu/qemu-plugin.h`, API version 4, QEMU 9.2 to
//! 10.x) this plugin uses, declared by hand. QEMU resolves these symbols when it loads the
//! plugin, so the library links only inside QEMU.

use core::ffi::{c_char, c_int, c_uint, c_void};

pub type PluginId = u64;
pub type MemInfo = u32;

/// `qemu_info_t`: only the fields read here, which lead the struct.
#[repr(C)]
pub struct Info {
    pub target_name: *const c_char,
    pub version_min: c_int,
    pub version_cur: c_int,
}

#[repr(C)]
pub struct Tb {
    _opaque: [u8; 0],
}

#[repr(C)]
pub struct Insn {
    _opaque: [u8; 0],
}

#[repr(C)]
pub struct Scoreboard {
    _opaque: [u8; 0],
}

/// `qemu_plugin_u64`: one u64 at `offset` bytes into every vCPU's scoreboard element.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct U64 {
    pub score: *mut Scoreboard,
    pub offset: usize,
}

pub const CB_NO_REGS: c_int = 0;
pub const MEM_RW: c_int = 3;
pub const INLINE_ADD_U64: c_int = 0;

pub type TbTransCb = extern "C" fn(id: PluginId, tb: *mut Tb);
pub type VcpuUdataCb = extern "C" fn(vcpu: c_uint, udata: *mut c_void);
pub type MemCb = extern "C" fn(vcpu: c_uint, info: MemInfo, vaddr: u64, udata: *mut c_void);
pub type UdataCb = extern "C" fn(id: PluginId, udata: *mut c_void);

extern "C" {
    pub fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: TbTransCb);
    pub fn qemu_plugin_register_vcpu_tb_exec_cb(
        tb: *mut Tb,
        cb: VcpuUdataCb,
        flags: c_int,
        udata: *mut c_void,
    );
    pub fn qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(
        tb: *mut Tb,
        op: c_int,
        entry: U64,
        imm: u64,
    );
    pub fn qemu_plugin_register_vcpu_mem_cb(
        insn: *mut Insn,
        cb: MemCb,
        flags: c_int,
        rw: c_int,
        udata: *mut c_void,
    );
    pub fn qemu_plugin_register_atexit_cb(id: PluginId, cb: UdataCb, udata: *mut c_void);
    pub fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    pub fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    pub fn qemu_plugin_insn_symbol(insn: *const Insn) -> *const c_char;
    pub fn qemu_plugin_mem_size_shift(info: MemInfo) -> c_uint;
    pub fn qemu_plugin_mem_is_store(info: MemInfo) -> bool;
    pub fn qemu_plugin_outs(s: *const c_char);
    pub fn qemu_plugin_scoreboard_new(element_size: usize) -> *mut Scoreboard;
    pub fn qemu_plugin_scoreboard_find(score: *mut Scoreboard, vcpu: c_uint) -> *mut c_void;
    pub fn qemu_plugin_u64_sum(entry: U64) -> u64;
}
