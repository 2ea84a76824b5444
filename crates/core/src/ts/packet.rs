//! The packet layer: finding the `0x47` sync and reading a packet's fixed header and adaptation
//! field (PID, payload start, random access indicator, PCR). Knows nothing of PES, PSI or pieces.

use super::{PACKET_LEN, SYNC_BYTE};

/// Offset of the first `0x47` confirmed by `0x47` 188 and 376 bytes later.
pub(super) fn find_sync(buf: &[u8]) -> Option<usize> {
    let last = buf.len().checked_sub(2 * PACKET_LEN + 1)?;
    (0..=last).find(|&i| {
        buf.get(i) == Some(&SYNC_BYTE)
            && buf.get(i + PACKET_LEN) == Some(&SYNC_BYTE)
            && buf.get(i + 2 * PACKET_LEN) == Some(&SYNC_BYTE)
    })
}

/// The fixed header and adaptation field of one packet.
#[derive(Debug)]
pub(super) struct Header {
    pub(super) pid: u16,
    pub(super) pusi: bool,
    pub(super) has_payload: bool,
    pub(super) rai: bool,
    /// 33-bit PCR base (90 kHz).
    pub(super) pcr: Option<u64>,
    pub(super) payload_start: usize,
}

impl Header {
    /// `None` for packets with the transport error indicator or a broken adaptation field.
    pub(super) fn parse(pkt: &[u8]) -> Option<Header> {
        let b1 = *pkt.get(1)?;
        let b2 = *pkt.get(2)?;
        let b3 = *pkt.get(3)?;
        if b1 & 0x80 != 0 {
            return None;
        }
        let pid = (u16::from(b1 & 0x1F) << 8) | u16::from(b2);
        let afc = (b3 >> 4) & 3;
        let mut rai = false;
        let mut pcr = None;
        let mut payload_start = 4;
        if afc & 2 != 0 {
            let len = usize::from(*pkt.get(4)?);
            payload_start = 5 + len;
            if payload_start > PACKET_LEN {
                return None;
            }
            if len > 0 {
                let flags = *pkt.get(5)?;
                rai = flags & 0x40 != 0;
                if flags & 0x10 != 0 && len >= 7 {
                    let b = pkt.get(6..11)?;
                    pcr = Some(
                        (u64::from(b[0]) << 25)
                            | (u64::from(b[1]) << 17)
                            | (u64::from(b[2]) << 9)
                            | (u64::from(b[3]) << 1)
                            | (u64::from(b[4]) >> 7),
                    );
                }
            }
        }
        Some(Header {
            pid,
            pusi: b1 & 0x40 != 0,
            has_payload: afc & 1 != 0,
            rai,
            pcr,
            payload_start: if afc & 1 != 0 {
                payload_start
            } else {
                PACKET_LEN
            },
        })
    }
}
