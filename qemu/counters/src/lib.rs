//! A QEMU TCG plugin: counts the guest instructions executed and the bytes its loads and
//! stores moved, per function symbol, per phase of the run. In user mode (`qemu-<arch>`)
//! the symbols are the program's; in system mode (`qemu-system-<arch>`) those of the
//! `-kernel` ELF, which for the bare-metal images (one vCPU, no interrupts, an identity map
//! where there is an MMU) is the whole guest.
//!
//! The guest marks its phases by calling functions named `bitnet_counters_phase_<name>`
//! (`bitnet-infer` does: `prefill`, `decode`, `end`); everything before the first mark is
//! phase `start`. Counting is exact and deterministic: an inline add per translated block
//! and symbol for instructions, a callback per memory access for bytes (the access size is
//! known only when it happens).
//!
//! Arguments: `out=FILE` (default: QEMU's log). The output is tab-separated:
//!
//! ```text
//! # qemu-counters 1 <guest architecture>
//! phase   symbol  instructions    loaded_bytes    stored_bytes
//! ```
//!
//! one line per phase and symbol that did anything; `?` is code outside every symbol the
//! binary names (a dynamic libc, the vDSO). Symbols stay mangled: the harness demangles.

mod ffi;

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

/// The API version this plugin was written against (see `ffi`).
#[no_mangle]
pub static qemu_plugin_version: c_int = 4;

const MARK_PREFIX: &[u8] = b"bitnet_counters_phase_";

/// Distinct symbols counted; later ones share the last slot.
const SLOTS: usize = 1 << 14;
/// Per slot: instructions, bytes loaded, bytes stored.
const FIELDS: usize = 3;
const LAST: usize = SLOTS - 1;
const OVERFLOW: &str = "(more symbols than the plugin has slots)";

/// Every vCPU's counters: `[u64; SLOTS * FIELDS]`, slot-major.
static BOARD: AtomicPtr<ffi::Scoreboard> = AtomicPtr::new(core::ptr::null_mut());
static STATE: Mutex<Option<State>> = Mutex::new(None);

struct State {
    out: Option<String>,
    arch: String,
    slots: HashMap<String, usize>,
    names: Vec<String>, // (slots in use,)
    /// The counters' sums at the start of the current phase, `FIELDS` per slot.
    at_mark: Vec<u64>,
    phase: String,
    /// Phases in the order they began, each with its per-slot deltas.
    phases: Vec<(String, Vec<u64>)>,
}

impl State {
    fn slot(&mut self, symbol: &str) -> usize {
        if let Some(&s) = self.slots.get(symbol) {
            return s;
        }
        let s = self.names.len().min(LAST);
        if s < LAST {
            self.names.push(symbol.to_string());
        } else if self.names.len() == LAST {
            self.names.push(OVERFLOW.to_string());
        }
        self.slots.insert(symbol.to_string(), s);
        s
    }

    /// Closes the current phase at the counters' present sums and opens `next`.
    fn mark(&mut self, next: &str) {
        let board = BOARD.load(Ordering::Acquire);
        let n = self.names.len() * FIELDS;
        let mut now = vec![0u64; n];
        for (i, v) in now.iter_mut().enumerate() {
            // SAFETY: `board` is the scoreboard made at install; the offset is inside
            // its element.
            *v = unsafe {
                ffi::qemu_plugin_u64_sum(ffi::U64 {
                    score: board,
                    offset: i * 8,
                })
            };
        }
        self.at_mark.resize(n, 0);
        let delta: Vec<u64> = now.iter().zip(&self.at_mark).map(|(a, b)| a - b).collect();
        match self.phases.iter_mut().find(|(p, _)| *p == self.phase) {
            Some((_, d)) => {
                d.resize(n, 0);
                d.iter_mut().zip(&delta).for_each(|(a, b)| *a += b);
            }
            None => self.phases.push((self.phase.clone(), delta)),
        }
        self.at_mark = now;
        self.phase = next.to_string();
    }

    fn report(&self) -> String {
        let mut s = format!(
            "# qemu-counters 1 {}\nphase\tsymbol\tinstructions\tloaded_bytes\tstored_bytes\n",
            self.arch
        );
        for (phase, d) in &self.phases {
            for (slot, name) in self.names.iter().enumerate() {
                // A phase closed before the symbol first ran has no entry for it.
                let Some(f) = d.get(slot * FIELDS..(slot + 1) * FIELDS) else {
                    continue;
                };
                if f.iter().any(|&v| v != 0) {
                    let _ = writeln!(s, "{phase}\t{name}\t{}\t{}\t{}", f[0], f[1], f[2]);
                }
            }
        }
        s
    }
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_mut().map(f)
}

fn entry(slot: usize, field: usize) -> ffi::U64 {
    ffi::U64 {
        score: BOARD.load(Ordering::Acquire),
        offset: (slot * FIELDS + field) * 8,
    }
}

/// # Safety
/// Called by QEMU once, with its own valid `info` and `argv`.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: ffi::PluginId,
    info: *const ffi::Info,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let info = &*info;
    let arch = CStr::from_ptr(info.target_name)
        .to_string_lossy()
        .into_owned();
    let mut out = None;
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        let arg = CStr::from_ptr(*argv.add(i)).to_string_lossy();
        match arg.split_once('=') {
            Some(("out", path)) => out = Some(path.to_string()),
            _ => {
                outs(&format!(
                    "qemu-counters: unknown argument `{arg}` (expected out=FILE)\n"
                ));
                return 1;
            }
        }
    }
    let board = ffi::qemu_plugin_scoreboard_new(SLOTS * FIELDS * 8);
    BOARD.store(board, Ordering::Release);
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        out,
        arch,
        slots: HashMap::new(),
        names: Vec::new(),
        at_mark: Vec::new(),
        phase: "start".into(),
        phases: Vec::new(),
    });
    ffi::qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    ffi::qemu_plugin_register_atexit_cb(id, on_exit, core::ptr::null_mut());
    0
}

extern "C" fn on_translate(_id: ffi::PluginId, tb: *mut ffi::Tb) {
    // SAFETY: QEMU passes a block under translation; its instructions live as long.
    unsafe {
        let n = ffi::qemu_plugin_tb_n_insns(tb);
        let mut per_slot: Vec<(usize, u64)> = Vec::new();
        let mut mark: Option<usize> = None;
        with_state(|st| {
            for i in 0..n {
                let insn = ffi::qemu_plugin_tb_get_insn(tb, i);
                let sym = ffi::qemu_plugin_insn_symbol(insn);
                let name = if sym.is_null() {
                    "?".into()
                } else {
                    CStr::from_ptr(sym).to_string_lossy()
                };
                let slot = st.slot(&name);
                if i == 0 && name.as_bytes().starts_with(MARK_PREFIX) {
                    mark = Some(slot);
                }
                match per_slot.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, c)) => *c += 1,
                    None => per_slot.push((slot, 1)),
                }
                ffi::qemu_plugin_register_vcpu_mem_cb(
                    insn,
                    on_access,
                    ffi::CB_NO_REGS,
                    ffi::MEM_RW,
                    slot as *mut c_void,
                );
            }
        });
        for (slot, count) in per_slot {
            ffi::qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(
                tb,
                ffi::INLINE_ADD_U64,
                entry(slot, 0),
                count,
            );
        }
        if let Some(slot) = mark {
            ffi::qemu_plugin_register_vcpu_tb_exec_cb(
                tb,
                on_mark,
                ffi::CB_NO_REGS,
                slot as *mut c_void,
            );
        }
    }
}

extern "C" fn on_access(vcpu: c_uint, info: ffi::MemInfo, _vaddr: u64, udata: *mut c_void) {
    let slot = udata as usize;
    // SAFETY: the scoreboard holds `SLOTS * FIELDS` u64 per vCPU and `slot < SLOTS`.
    unsafe {
        let bytes = 1u64 << ffi::qemu_plugin_mem_size_shift(info);
        let field = if ffi::qemu_plugin_mem_is_store(info) {
            2
        } else {
            1
        };
        let base = ffi::qemu_plugin_scoreboard_find(BOARD.load(Ordering::Acquire), vcpu);
        *(base as *mut u64).add(slot * FIELDS + field) += bytes;
    }
}

extern "C" fn on_mark(_vcpu: c_uint, udata: *mut c_void) {
    let slot = udata as usize;
    with_state(|st| {
        let name = st.names[slot].as_bytes()[MARK_PREFIX.len()..].to_vec();
        let name = String::from_utf8_lossy(&name).into_owned();
        // A mark's block retranslated or split still starts one phase.
        if name != st.phase {
            st.mark(&name);
        }
    });
}

extern "C" fn on_exit(_id: ffi::PluginId, _udata: *mut c_void) {
    with_state(|st| {
        st.mark("exit");
        let report = st.report();
        match &st.out {
            Some(path) => {
                if let Err(e) = std::fs::write(path, report) {
                    outs(&format!("qemu-counters: cannot write {path}: {e}\n"));
                }
            }
            None => outs(&report),
        }
    });
}

fn outs(s: &str) {
    let c = std::ffi::CString::new(s.replace('\0', " ")).expect("NULs replaced");
    // SAFETY: a valid NUL-terminated string for the duration of the call.
    unsafe { ffi::qemu_plugin_outs(c.as_ptr()) }
}
