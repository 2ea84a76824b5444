//! A fixed-length set of piece indices, stored as the BitTorrent wire bitfield (MSB first).

/// A set of pieces out of `len`. Spare bits in the last byte are always zero.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    count: u32,
}

/// A wire bitfield of the wrong size or with spare bits set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bitfield of {got} bytes does not fit {pieces} pieces (or has spare bits set)")]
pub struct BitfieldError {
    /// Bytes received.
    pub got: usize,
    /// Pieces in the torrent.
    pub pieces: u32,
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
            count: 0,
        }
    }

    /// A full set over `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        b.bytes.iter_mut().for_each(|x| *x = 0xff);
        b.clear_spare();
        b.count = len;
        b
    }

    /// Reads a wire bitfield. Its length must be exactly `ceil(len/8)` and spare bits zero.
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let err = BitfieldError {
            got: bytes.len(),
            pieces: len,
        };
        if bytes.len() != len.div_ceil(8) as usize {
            return Err(err);
        }
        let mut b = Bitfield {
            bytes: bytes.to_vec(),
            len,
            count: 0,
        };
        let before: u32 = b.bytes.iter().map(|x| x.count_ones()).sum();
        b.clear_spare();
        b.count = b.bytes.iter().map(|x| x.count_ones()).sum();
        if before != b.count {
            return Err(err);
        }
        Ok(b)
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of pieces the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when it ranges over no pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// True when every piece is in the set.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Is piece `i` in the set? Out of range reads as false.
    pub fn get(&self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Adds or removes piece `i`; returns whether it changed. Out of range is ignored.
    pub fn set(&mut self, i: u32, on: bool) -> bool {
        if i >= self.len || self.get(i) == on {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        if on {
            *byte |= 0x80 >> (i % 8);
            self.count += 1;
        } else {
            *byte &= !(0x80 >> (i % 8));
            self.count -= 1;
        }
        true
    }

    /// Iterates the pieces in the set, in order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes.iter().enumerate().flat_map(|(bi, &b)| {
            (0..8u32)
                .filter(move |k| b & (0x80 >> k) != 0)
                .map(move |k| bi as u32 * 8 + k)
        })
    }

    fn clear_spare(&mut self) {
        let spare = self.bytes.len() as u32 * 8 - self.len;
        if spare > 0 {
            if let Some(last) = self.bytes.last_mut() {
                *last &= 0xffu8 << spare;
            }
        }
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.count, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spare_bits_rejected() {
        assert!(Bitfield::from_wire(&[0xff], 7).is_err());
        assert_eq!(Bitfield::from_wire(&[0xfe], 7).unwrap().count(), 7);
        assert!(Bitfield::from_wire(&[0xff, 0], 7).is_err());
    }

    #[test]
    fn full_and_set() {
        let mut b = Bitfield::full(10);
        assert!(b.is_full());
        assert_eq!(b.as_bytes(), &[0xff, 0xc0]);
        assert!(b.set(3, false));
        assert!(!b.set(3, false));
        assert_eq!(b.count(), 9);
        assert!(!b.get(3));
        assert!(!b.get(100));
    }

    proptest! {
        #[test]
        fn ones_match_gets(len in 0u32..200, seed in any::<Vec<u32>>()) {
            let mut b = Bitfield::new(len);
            for s in seed { if len > 0 { b.set(s % len, true); } }
            let ones: Vec<u32> = b.ones().collect();
            prop_assert_eq!(ones.len() as u32, b.count());
            for i in 0..len { prop_assert_eq!(b.get(i), ones.contains(&i)); }
            let back = Bitfield::from_wire(b.as_bytes(), len).unwrap();
            prop_assert_eq!(back, b);
        }
    }
}
