//! Message stream encryption (MSE/PE, "protocol encryption"): the obfuscated handshake that
//! libtorrent, Vuze, qBittorrent, Transmission and aria2 speak before the BitTorrent handshake.
//!
//! Sans-IO, like the rest of core: an [`Initiator`] (we dial) or a [`Responder`] (we were
//! dialled) is fed the bytes read from the socket and appends what to write; it ends in an
//! [`Established`] — the torrent, the payload method and its ciphers, and any payload bytes
//! that arrived with the handshake. Randomness (the Diffie–Hellman secret and the padding) is
//! the caller's, so tests and the fuzz target are deterministic.
//!
//! The exchange (A dials B; `HASH` is SHA-1, `S` the shared secret, `SKEY` the info hash):
//! ```text
//! 1 A->B  Ya, PadA
//! 2 B->A  Yb, PadB
//! 3 A->B  HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A  ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5 A->B  ENCRYPT2(payload)
//! ```
//! `Y` are 768-bit Diffie–Hellman public keys (group of the spec, generator 2), `ENCRYPT` is
//! RC4 keyed with `HASH('keyA'|'keyB', S, SKEY)` after discarding 1,024 bytes of keystream,
//! `VC` eight zero bytes, and `ENCRYPT2` the selected method: RC4 continued, or plaintext
//! (then only the handshake is obfuscated, as libtorrent does by default). Pads are at most
//! 512 bytes; the receiving side finds where the other's pad ends by scanning for a value only
//! the holder of `S` can produce. Everything is bounded: a peer that does not synchronise
//! within the pad's limit, names an unknown torrent or offers no common method gets an error.
//!
//! Why hand-written: no maintained crate implements MSE (rqbit, the Rust client, lacks it);
//! the primitives are crates (`rc4`, `num-bigint`, `sha1`).

use num_bigint::BigUint;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

use crate::InfoHash;

/// Bytes of a Diffie–Hellman public key.
pub const KEY_LEN: usize = 96;
/// Longest pad (PadA, PadB, PadC, PadD).
pub const MAX_PAD: usize = 512;
/// Longest initial payload accepted in step 3 (a BitTorrent handshake is 68 bytes).
pub const MAX_IA: usize = 4096;
/// Bytes of the Diffie–Hellman secret exponent (160 bits, as libtorrent's).
pub const SECRET_LEN: usize = 20;
/// `crypto_provide`/`crypto_select` bit: plaintext payload.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
/// `crypto_provide`/`crypto_select` bit: RC4 payload.
pub const CRYPTO_RC4: u32 = 0x02;

/// The group's prime (768 bits); the generator is 2.
const PRIME: [u8; KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];

/// Bytes of the step 3/4 header after the sync point: VC, crypto bits, pad length.
const HEADER_LEN: usize = 8 + 4 + 2;

/// The payload method both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Only the handshake was obfuscated; the payload is plain.
    Plaintext,
    /// The payload is RC4-encrypted both ways.
    Rc4,
}

impl Method {
    fn bit(self) -> u32 {
        match self {
            Method::Plaintext => CRYPTO_PLAINTEXT,
            Method::Rc4 => CRYPTO_RC4,
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    /// The other side's public key is 0, 1 or not below the prime minus one.
    #[error("Diffie-Hellman public key out of range")]
    BadKey,
    /// The sync value did not appear within the longest pad.
    #[error("no synchronisation within {MAX_PAD} bytes of padding")]
    NoSync,
    /// The initiator asked for a torrent we do not have.
    #[error("encrypted handshake for an unknown torrent")]
    UnknownTorrent,
    /// The verification constant did not decrypt to zeros.
    #[error("bad verification constant")]
    BadVc,
    /// No method both sides allow (the bits offered).
    #[error("no common crypto method (offered {0:#x})")]
    NoCommonMethod(u32),
    /// The responder selected something other than one method we offered.
    #[error("crypto_select {0:#x} was not offered")]
    BadSelect(u32),
    /// A pad longer than [`MAX_PAD`].
    #[error("padding of {0} bytes")]
    PadTooLong(usize),
    /// An initial payload longer than [`MAX_IA`].
    #[error("initial payload of {0} bytes")]
    IaTooLong(usize),
}

/// One direction's RC4 keystream (1,024 bytes already discarded).
pub struct Keystream(Rc4);

impl Keystream {
    fn new(label: &[u8; 4], s: &[u8; KEY_LEN], skey: &InfoHash) -> Keystream {
        let key = hash(&[label, s, &skey.0]);
        let mut rc4 = Rc4::new_from_slice(&key).expect("RC4 takes 20-byte keys");
        let mut discard = [0u8; 1024];
        rc4.apply_keystream(&mut discard);
        Keystream(rc4)
    }

    /// Encrypts or decrypts `buf` in place, advancing the stream.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

impl std::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keystream(..)")
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established {
    /// The torrent (SKEY).
    pub info_hash: InfoHash,
    /// The payload method.
    pub method: Method,
    /// For RC4: (our sending stream, the other side's). `None` for plaintext.
    pub keys: Option<(Keystream, Keystream)>,
    /// Payload that arrived with the handshake, already decrypted: for a responder the
    /// initiator's initial payload (its BitTorrent handshake) first.
    pub received: Vec<u8>,
}

/// SHA-1 over the concatenated parts.
fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Our Diffie–Hellman key pair.
struct Dh {
    secret: BigUint,
    public: [u8; KEY_LEN],
}

impl Dh {
    fn new(secret: &[u8; SECRET_LEN]) -> Dh {
        let secret = BigUint::from_bytes_be(secret);
        let public = to_key(&BigUint::from(2u8).modpow(&secret, &prime()));
        Dh { secret, public }
    }

    /// `S` from the other side's public key.
    fn shared(&self, theirs: &[u8]) -> Result<[u8; KEY_LEN], MseError> {
        let p = prime();
        let y = BigUint::from_bytes_be(theirs);
        if y <= BigUint::from(1u8) || y >= &p - 1u8 {
            return Err(MseError::BadKey);
        }
        Ok(to_key(&y.modpow(&self.secret, &p)))
    }
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&PRIME)
}

/// Big-endian, left-padded to [`KEY_LEN`] bytes.
fn to_key(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u16(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}

/// The dialling side.
#[derive(Debug)]
pub struct Initiator {
    dh: Dh,
    skey: InfoHash,
    provide: u32,
    ia: Vec<u8>,
    buf: Vec<u8>,
    state: IState,
}

enum IState {
    /// Waiting for Yb.
    Yb,
    /// Scanning PadB for the encrypted VC (`pattern`); `dec` is already past it.
    Sync {
        enc: Keystream,
        dec: Keystream,
        pattern: [u8; 8],
    },
    /// Skipping PadD.
    PadD {
        enc: Keystream,
        dec: Keystream,
        method: Method,
        left: usize,
    },
    Done,
}

impl std::fmt::Debug for Dh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dh(..)")
    }
}

impl std::fmt::Debug for IState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IState::Yb => "Yb",
            IState::Sync { .. } => "Sync",
            IState::PadD { .. } => "PadD",
            IState::Done => "Done",
        })
    }
}

impl Initiator {
    /// Starts a handshake for `skey` offering the methods in `provide` (bits), with `ia` (our
    /// BitTorrent handshake, at most [`MAX_IA`] bytes) as initial payload. Returns the
    /// initiator and step 1 (Ya and `pad`, cut to [`MAX_PAD`] bytes) to send.
    pub fn new(
        skey: InfoHash,
        secret: &[u8; SECRET_LEN],
        pad: &[u8],
        provide: u32,
        ia: &[u8],
    ) -> (Initiator, Vec<u8>) {
        let dh = Dh::new(secret);
        let pad = &pad[..pad.len().min(MAX_PAD)];
        let mut first = Vec::with_capacity(KEY_LEN + pad.len());
        first.extend_from_slice(&dh.public);
        first.extend_from_slice(pad);
        let me = Initiator {
            dh,
            skey,
            provide,
            ia: ia[..ia.len().min(MAX_IA)].to_vec(),
            buf: Vec::new(),
            state: IState::Yb,
        };
        (me, first)
    }

    /// Feeds bytes read from the socket; appends to `out` what to send. `Some` once done (feed
    /// nothing more: later bytes are payload, to be decrypted with the keys returned).
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Established>, MseError> {
        self.buf.extend_from_slice(input);
        loop {
            match std::mem::replace(&mut self.state, IState::Done) {
                IState::Yb => {
                    if self.buf.len() < KEY_LEN {
                        self.state = IState::Yb;
                        return Ok(None);
                    }
                    let s = self.dh.shared(&self.buf[..KEY_LEN])?;
                    self.buf.drain(..KEY_LEN);
                    let mut enc = Keystream::new(b"keyA", &s, &self.skey);
                    let mut dec = Keystream::new(b"keyB", &s, &self.skey);
                    out.extend_from_slice(&hash(&[b"req1", &s]));
                    let req2 = hash(&[b"req2", &self.skey.0]);
                    let req3 = hash(&[b"req3", &s]);
                    out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
                    let start = out.len();
                    out.extend_from_slice(&[0u8; 8]);
                    out.extend_from_slice(&self.provide.to_be_bytes());
                    out.extend_from_slice(&0u16.to_be_bytes());
                    out.extend_from_slice(&(self.ia.len() as u16).to_be_bytes());
                    out.extend_from_slice(&self.ia);
                    enc.apply(&mut out[start..]);
                    let mut pattern = [0u8; 8];
                    dec.apply(&mut pattern);
                    self.state = IState::Sync { enc, dec, pattern };
                }
                IState::Sync {
                    enc,
                    mut dec,
                    pattern,
                } => {
                    let window = &self.buf[..self.buf.len().min(MAX_PAD + 8)];
                    let Some(at) = find(window, &pattern) else {
                        if self.buf.len() >= MAX_PAD + 8 {
                            return Err(MseError::NoSync);
                        }
                        self.state = IState::Sync { enc, dec, pattern };
                        return Ok(None);
                    };
                    if self.buf.len() < at + HEADER_LEN {
                        self.state = IState::Sync { enc, dec, pattern };
                        return Ok(None);
                    }
                    let mut rest = [0u8; HEADER_LEN - 8];
                    rest.copy_from_slice(&self.buf[at + 8..at + HEADER_LEN]);
                    dec.apply(&mut rest);
                    let select = be_u32(&rest);
                    let method = match select {
                        CRYPTO_PLAINTEXT => Method::Plaintext,
                        CRYPTO_RC4 => Method::Rc4,
                        _ => return Err(MseError::BadSelect(select)),
                    };
                    if self.provide & select == 0 {
                        return Err(MseError::BadSelect(select));
                    }
                    let left = be_u16(&rest[4..]);
                    if left > MAX_PAD {
                        return Err(MseError::PadTooLong(left));
                    }
                    self.buf.drain(..at + HEADER_LEN);
                    self.state = IState::PadD {
                        enc,
                        dec,
                        method,
                        left,
                    };
                }
                IState::PadD {
                    enc,
                    mut dec,
                    method,
                    left,
                } => {
                    let n = left.min(self.buf.len());
                    dec.apply(&mut self.buf[..n]);
                    self.buf.drain(..n);
                    if n < left {
                        self.state = IState::PadD {
                            enc,
                            dec,
                            method,
                            left: left - n,
                        };
                        return Ok(None);
                    }
                    let mut received = std::mem::take(&mut self.buf);
                    let keys = match method {
                        Method::Plaintext => None,
                        Method::Rc4 => {
                            dec.apply(&mut received);
                            Some((enc, dec))
                        }
                    };
                    return Ok(Some(Established {
                        info_hash: self.skey,
                        method,
                        keys,
                        received,
                    }));
                }
                IState::Done => return Ok(None),
            }
        }
    }
}

/// The dialled side.
#[derive(Debug)]
pub struct Responder {
    dh: Dh,
    known: Vec<InfoHash>,
    allowed: u32,
    prefer: Method,
    pad: Vec<u8>,
    buf: Vec<u8>,
    state: RState,
}

enum RState {
    /// Waiting for Ya.
    Ya,
    /// Scanning PadA for `HASH('req1', S)`.
    Sync {
        s: Box<[u8; KEY_LEN]>,
        req1: [u8; 20],
    },
    /// Waiting for the rest of step 3's fixed part.
    Header {
        skey: InfoHash,
        enc: Keystream,
        dec: Keystream,
    },
    /// PadC, `len(IA)` and IA: `done` bytes of them decrypted, IA's length once read.
    Body {
        skey: InfoHash,
        enc: Keystream,
        dec: Keystream,
        select: Method,
        pad: usize,
        done: usize,
        ia_len: Option<usize>,
    },
    Done,
}

impl std::fmt::Debug for RState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RState::Ya => "Ya",
            RState::Sync { .. } => "Sync",
            RState::Header { .. } => "Header",
            RState::Body { .. } => "Body",
            RState::Done => "Done",
        })
    }
}

impl Responder {
    /// A responder for the torrents in `known`, allowing the methods in `allowed` (bits) and
    /// choosing `prefer` when the initiator offers both; `pad` (cut to [`MAX_PAD`]) follows Yb.
    pub fn new(
        known: Vec<InfoHash>,
        secret: &[u8; SECRET_LEN],
        pad: &[u8],
        allowed: u32,
        prefer: Method,
    ) -> Responder {
        Responder {
            dh: Dh::new(secret),
            known,
            allowed,
            prefer,
            pad: pad[..pad.len().min(MAX_PAD)].to_vec(),
            buf: Vec::new(),
            state: RState::Ya,
        }
    }

    /// Feeds bytes read from the socket; appends to `out` what to send. `Some` once done.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Established>, MseError> {
        self.buf.extend_from_slice(input);
        loop {
            match std::mem::replace(&mut self.state, RState::Done) {
                RState::Ya => {
                    if self.buf.len() < KEY_LEN {
                        self.state = RState::Ya;
                        return Ok(None);
                    }
                    let s = self.dh.shared(&self.buf[..KEY_LEN])?;
                    self.buf.drain(..KEY_LEN);
                    out.extend_from_slice(&self.dh.public);
                    out.extend_from_slice(&self.pad);
                    let req1 = hash(&[b"req1", &s]);
                    self.state = RState::Sync {
                        s: Box::new(s),
                        req1,
                    };
                }
                RState::Sync { s, req1 } => {
                    let window = &self.buf[..self.buf.len().min(MAX_PAD + 20)];
                    let Some(at) = find(window, &req1) else {
                        if self.buf.len() >= MAX_PAD + 20 {
                            return Err(MseError::NoSync);
                        }
                        self.state = RState::Sync { s, req1 };
                        return Ok(None);
                    };
                    if self.buf.len() < at + 40 {
                        self.state = RState::Sync { s, req1 };
                        return Ok(None);
                    }
                    let req3 = hash(&[b"req3", &s[..]]);
                    let mut req2 = [0u8; 20];
                    for (i, b) in req2.iter_mut().enumerate() {
                        *b = self.buf[at + 20 + i] ^ req3[i];
                    }
                    let skey = *self
                        .known
                        .iter()
                        .find(|ih| hash(&[b"req2", &ih.0]) == req2)
                        .ok_or(MseError::UnknownTorrent)?;
                    self.buf.drain(..at + 40);
                    self.state = RState::Header {
                        skey,
                        enc: Keystream::new(b"keyB", &s, &skey),
                        dec: Keystream::new(b"keyA", &s, &skey),
                    };
                }
                RState::Header { skey, enc, mut dec } => {
                    if self.buf.len() < HEADER_LEN {
                        self.state = RState::Header { skey, enc, dec };
                        return Ok(None);
                    }
                    dec.apply(&mut self.buf[..HEADER_LEN]);
                    if self.buf[..8] != [0u8; 8] {
                        return Err(MseError::BadVc);
                    }
                    let provide = be_u32(&self.buf[8..]);
                    let common = provide & self.allowed;
                    let select = if common & self.prefer.bit() != 0 {
                        self.prefer
                    } else if common & CRYPTO_RC4 != 0 {
                        Method::Rc4
                    } else if common & CRYPTO_PLAINTEXT != 0 {
                        Method::Plaintext
                    } else {
                        return Err(MseError::NoCommonMethod(provide));
                    };
                    let pad = be_u16(&self.buf[12..]);
                    if pad > MAX_PAD {
                        return Err(MseError::PadTooLong(pad));
                    }
                    self.buf.drain(..HEADER_LEN);
                    self.state = RState::Body {
                        skey,
                        enc,
                        dec,
                        select,
                        pad,
                        done: 0,
                        ia_len: None,
                    };
                }
                RState::Body {
                    skey,
                    mut enc,
                    mut dec,
                    select,
                    pad,
                    mut done,
                    mut ia_len,
                } => {
                    // PadC, len(IA) and IA are decrypted as they arrive (`done` bytes so far),
                    // never past IA: a plaintext payload may follow.
                    let limit = pad + 2 + ia_len.unwrap_or(0);
                    let upto = self.buf.len().min(limit);
                    dec.apply(&mut self.buf[done..upto]);
                    done = upto;
                    if ia_len.is_none() && done == pad + 2 {
                        let n = be_u16(&self.buf[pad..]);
                        if n > MAX_IA {
                            return Err(MseError::IaTooLong(n));
                        }
                        ia_len = Some(n);
                        self.state = RState::Body {
                            skey,
                            enc,
                            dec,
                            select,
                            pad,
                            done,
                            ia_len,
                        };
                        continue;
                    }
                    let Some(ia) = ia_len.filter(|n| done == pad + 2 + n) else {
                        self.state = RState::Body {
                            skey,
                            enc,
                            dec,
                            select,
                            pad,
                            done,
                            ia_len,
                        };
                        return Ok(None);
                    };
                    let mut received = self.buf.split_off(pad + 2);
                    self.buf.clear();
                    if select == Method::Rc4 {
                        dec.apply(&mut received[ia..]);
                    }
                    let start = out.len();
                    out.extend_from_slice(&[0u8; 8]);
                    out.extend_from_slice(&select.bit().to_be_bytes());
                    out.extend_from_slice(&0u16.to_be_bytes());
                    enc.apply(&mut out[start..]);
                    return Ok(Some(Established {
                        info_hash: skey,
                        method: select,
                        keys: (select == Method::Rc4).then_some((enc, dec)),
                        received,
                    }));
                }
                RState::Done => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests;
