//! GPT-2's byte-level alphabet: every byte is spelled by one visible character, so a
//! vocabulary of strings can hold arbitrary bytes.

/// Printable Latin-1 bytes stand for themselves; the other 68 are shifted to U+0100 and up
/// in byte order.
pub const fn byte_to_char(b: u8) -> char {
    if printable(b) {
        return b as char;
    }
    let mut n = 0u32;
    let mut x = 0u8;
    while x < b {
        if !printable(x) {
            n += 1;
        }
        x += 1;
    }
    // 256 + n < U+0144: always a valid scalar value.
    match char::from_u32(256 + n) {
        Some(c) => c,
        None => '\u{FFFD}',
    }
}

const fn printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// (byte,) -> its character's UTF-8 (one or two bytes) and length.
pub const BYTE_UTF8: [([u8; 2], u8); 256] = {
    let mut t = [([0u8; 2], 0u8); 256];
    let mut b = 0;
    while b < 256 {
        let c = byte_to_char(b as u8) as u32;
        t[b] = if c < 0x80 {
            ([c as u8, 0], 1)
        } else {
            ([0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8], 2)
        };
        b += 1;
    }
    t
};

/// The byte a character of the alphabet spells, if it is one.
pub fn char_to_byte(c: char) -> Option<u8> {
    const MAP: [i16; 0x144] = {
        let mut m = [-1i16; 0x144];
        let mut b = 0;
        while b < 256 {
            m[byte_to_char(b as u8) as usize] = b as i16;
            b += 1;
        }
        m
    };
    MAP.get(c as usize).and_then(|&b| u8::try_from(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_map_is_a_bijection() {
        let chars: alloc::collections::BTreeSet<char> = (0..=255u8).map(byte_to_char).collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(byte_to_char(b' '), '\u{120}'); // GPT-2's 'Ġ'
        assert_eq!(byte_to_char(b'\n'), '\u{10A}'); // 'Ċ'
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
            let (u, n) = BYTE_UTF8[b as usize];
            let mut buf = [0u8; 4];
            assert_eq!(
                &u[..n as usize],
                byte_to_char(b).encode_utf8(&mut buf).as_bytes()
            );
        }
        assert_eq!(char_to_byte('中'), None);
    }
}
