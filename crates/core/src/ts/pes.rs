//! PES headers and media time: PTS/DTS from a PES header, the 33-bit wrap of PTS and PCR undone
//! ([`Unwrapper`]), 90 kHz ticks to microseconds, and the bit-rate meter over media time. Knows
//! nothing of packets or pieces.

use std::collections::VecDeque;

/// Bitrate window and sampling.
const BITRATE_WINDOW_US: u64 = 5_000_000;
const BITRATE_SAMPLE_US: u64 = 250_000;
const BITRATE_MAX_SAMPLES: usize = 32;

/// 90 kHz ticks to microseconds.
pub(super) fn ticks_to_us(t: u64) -> u64 {
    t.saturating_mul(100) / 9
}

/// The bits of a PES header the cutter needs.
#[derive(Debug, Default)]
pub(super) struct PesHeader {
    pub(super) pts: Option<u64>,
    pub(super) dts: Option<u64>,
    /// Bytes before the elementary stream data (0 when this is not a PES start).
    pub(super) header_len: usize,
}

pub(super) fn parse_pes_header(p: &[u8]) -> PesHeader {
    let none = PesHeader::default();
    if p.get(..3) != Some(&[0, 0, 1]) {
        return none;
    }
    let Some(&stream_id) = p.get(3) else {
        return none;
    };
    // Streams without the optional PES header (padding, private_stream_2, ECM, …).
    if matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    ) {
        return PesHeader {
            header_len: 6,
            ..none
        };
    }
    let (Some(&flags), Some(&hlen)) = (p.get(7), p.get(8)) else {
        return none;
    };
    let header_len = 9 + usize::from(hlen);
    let pts = if flags & 0x80 != 0 {
        p.get(9..14).and_then(read_ts)
    } else {
        None
    };
    let dts = if flags & 0xC0 == 0xC0 {
        p.get(14..19).and_then(read_ts)
    } else {
        None
    };
    PesHeader {
        pts,
        dts,
        header_len,
    }
}

/// A 33-bit PES timestamp from its 5-byte encoding.
pub(super) fn read_ts(b: &[u8]) -> Option<u64> {
    let b: &[u8; 5] = b.try_into().ok()?;
    Some(
        ((u64::from(b[0] >> 1) & 0x07) << 30)
            | (u64::from(b[1]) << 22)
            | ((u64::from(b[2]) >> 1) << 15)
            | (u64::from(b[3]) << 7)
            | (u64::from(b[4]) >> 1),
    )
}

/// Turns 33-bit wrapping timestamps into a monotonic-ish 90 kHz clock.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Unwrapper {
    pub(super) last_raw: Option<u64>,
    pub(super) value: u64,
}

impl Unwrapper {
    const MOD: u64 = 1 << 33;

    pub(super) fn unwrap(&mut self, raw: u64) -> u64 {
        let raw = raw & (Self::MOD - 1);
        match self.last_raw {
            None => self.value = raw,
            Some(last) => {
                let fwd = raw.wrapping_sub(last) & (Self::MOD - 1);
                if fwd < Self::MOD / 2 {
                    self.value = self.value.saturating_add(fwd);
                } else {
                    self.value = self.value.saturating_sub(Self::MOD - fwd);
                }
            }
        }
        self.last_raw = Some(raw);
        self.value
    }
}

/// Bytes over media time, on PCR samples when there are any, else video DTS.
#[derive(Debug, Default)]
pub(super) struct RateMeter {
    pub(super) samples: VecDeque<(u64, u64)>,
    pub(super) from_pcr: bool,
}

impl RateMeter {
    pub(super) fn sample(&mut self, t: u64, pcr: bool, bytes: u64) {
        if pcr && !self.from_pcr {
            self.from_pcr = true;
            self.samples.clear();
        }
        if pcr != self.from_pcr {
            return;
        }
        let t_us = ticks_to_us(t);
        if let Some(&(last, _)) = self.samples.back() {
            if t_us < last {
                self.samples.clear();
            } else if t_us - last < BITRATE_SAMPLE_US {
                return;
            }
        }
        self.samples.push_back((t_us, bytes));
        while self.samples.len() > BITRATE_MAX_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|&(t0, _)| t_us - t0 > BITRATE_WINDOW_US && self.samples.len() > 2)
        {
            self.samples.pop_front();
        }
    }

    pub(super) fn bps(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                (b1.saturating_sub(b0)).saturating_mul(8_000_000) / (t1 - t0)
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrapper_crosses_the_33_bit_wrap() {
        let mut u = Unwrapper::default();
        let a = u.unwrap((1 << 33) - 1800);
        let b = u.unwrap(1800);
        assert_eq!(b - a, 3600);
    }
}
