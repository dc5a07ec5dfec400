//! Redis's HyperLogLog string, as far as a restore needs it: checking that bytes are one
//! before `SET` stores them (Redis itself only finds out at the next `PFCOUNT`).
//!
//! Layout (Redis `hyperloglog.c`): a 16-byte header (`HYLL`, the encoding, three unused bytes,
//! an 8-byte cached cardinality), then 16,384 six-bit registers, dense (12,288 bytes) or
//! sparse (run-length opcodes that must cover exactly the 16,384 registers).

const REGISTERS: usize = 16_384;
const HEADER: usize = 16;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;

/// Why `bytes` are not a Redis HyperLogLog, or `Ok`.
pub(crate) fn check(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() < HEADER || &bytes[..4] != b"HYLL" {
        return Err("not a Redis HyperLogLog (no HYLL header)");
    }
    let body = &bytes[HEADER..];
    match bytes[4] {
        DENSE if body.len() == REGISTERS * 6 / 8 => Ok(()),
        DENSE => Err("a dense Redis HyperLogLog of the wrong length"),
        SPARSE => check_sparse(body),
        _ => Err("a Redis HyperLogLog of an unknown encoding"),
    }
}

/// Sparse opcodes: `00xxxxxx` ZERO (x+1 registers), `01xxxxxx yyyyyyyy` XZERO (xy+1),
/// `1vvvvvxx` VAL (x+1 registers of value v+1).
fn check_sparse(body: &[u8]) -> Result<(), &'static str> {
    let mut covered = 0usize;
    let mut i = 0;
    while i < body.len() {
        let op = body[i];
        covered += match op >> 6 {
            0b00 => usize::from(op & 0x3f) + 1,
            0b01 => {
                let low = *body.get(i + 1).ok_or("a sparse Redis HyperLogLog cut short")?;
                i += 1;
                (usize::from(op & 0x3f) << 8 | usize::from(low)) + 1
            }
            _ => usize::from(op & 0x03) + 1,
        };
        i += 1;
        if covered > REGISTERS {
            return Err("a sparse Redis HyperLogLog covering more than 16384 registers");
        }
    }
    if covered == REGISTERS {
        Ok(())
    } else {
        Err("a sparse Redis HyperLogLog covering fewer than 16384 registers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(encoding: u8) -> Vec<u8> {
        let mut h = b"HYLL".to_vec();
        h.push(encoding);
        h.extend_from_slice(&[0; 11]);
        h
    }

    #[test]
    fn accepts_whole_encodings_and_refuses_the_rest() {
        // Empty sparse: one XZERO of all 16,384 registers (what PFADD creates).
        let mut empty = header(SPARSE);
        empty.extend_from_slice(&[0x7f, 0xff]);
        assert_eq!(check(&empty), Ok(()));
        // One register set: XZERO 100, VAL 3 x1, XZERO 16283.
        let mut one = header(SPARSE);
        one.extend_from_slice(&[
            0x40,
            99,
            0x80 | (2 << 2),
            0x40 | (16_282 >> 8) as u8,
            (16_282 & 0xff) as u8,
        ]);
        assert_eq!(check(&one), Ok(()));
        let mut short = header(SPARSE);
        short.extend_from_slice(&[0x5f, 0xff]); // XZERO 8,192
        assert!(check(&short).is_err());
        let mut long = empty.clone();
        long.push(0x00);
        assert!(check(&long).is_err());
        let mut cut = header(SPARSE);
        cut.extend_from_slice(&[0x5f, 0xff, 0x5f]);
        assert!(check(&cut).is_err());

        let mut dense = header(DENSE);
        dense.resize(HEADER + 12_288, 0);
        assert_eq!(check(&dense), Ok(()));
        dense.pop();
        assert!(check(&dense).is_err());
        assert!(check(b"HYLL").is_err());
        assert!(check(&header(2)).is_err());
        assert!(check(b"not a sketch at all, not at all").is_err());
    }
}
