//! Bencode (BEP 3): a bounded, zero-copy decoder and a canonical encoder.
//!
//! This module owns the byte-level grammar only; it knows nothing of torrents.
//!
//! - [`decode`] / [`decode_prefix`] / [`decode_with`] borrow from the input: byte strings are
//!   slices of it and every dictionary keeps its exact raw span ([`Dict::raw`]), so the info hash
//!   is computed over the bytes as received, never over a re-encoding.
//! - The decoder is iterative (an explicit stack, no recursion) and bounded by [`Limits`]:
//!   nesting depth and total number of values. A string length is checked against the remaining
//!   input before anything is allocated, so a tiny input can never claim a large allocation.
//! - Strict where it matters: integers with leading zeros, `-0`, overflowing `i64`, non-string
//!   dictionary keys and duplicate keys are refused. Unsorted keys are accepted (real torrents
//!   have them).
//! - [`OwnedValue`] is the encoder side: its dictionaries are `BTreeMap`s, so
//!   [`OwnedValue::encode`] always writes canonical bencode (keys sorted by raw bytes).

use std::collections::BTreeMap;

/// A decoded bencode value borrowing from the input buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(&'a [u8]),
    /// `l...e`.
    List(Vec<Value<'a>>),
    /// `d...e`.
    Dict(Dict<'a>),
}

/// A decoded dictionary: entries in the order received, plus its raw byte span.
///
/// Keys are unique (the decoder refuses duplicates) but not necessarily sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
    raw: &'a [u8],
    /// True when keys arrived strictly sorted, so lookups can binary-search.
    sorted: bool,
}

/// Decoder bounds. Both are checked before the corresponding memory is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries (the top-level container is depth 1).
    /// Default 64. Values decoded with a very large depth are also dropped recursively, so keep
    /// this modest.
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries, dictionary keys included) in one
    /// decode. Default 1,000,000.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_items: 1_000_000,
        }
    }
}

/// Why bytes are not (acceptable) bencode. Every variant carries the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ended in the middle of a value.
    #[error("bencode: unexpected end of input at byte {offset}")]
    UnexpectedEof {
        /// Offset where more input was needed.
        offset: usize,
    },
    /// A byte that cannot start a value here.
    #[error("bencode: unexpected byte 0x{byte:02x} at byte {offset}")]
    UnexpectedByte {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// An integer that is empty, has a leading zero, is `-0` or has a non-digit.
    #[error("bencode: malformed integer at byte {offset}")]
    BadInt {
        /// Offset of the `i`.
        offset: usize,
    },
    /// An integer that does not fit in `i64`.
    #[error("bencode: integer out of i64 range at byte {offset}")]
    IntOverflow {
        /// Offset of the `i`.
        offset: usize,
    },
    /// A string length prefix that is malformed (leading zero, too many digits, missing `:`).
    #[error("bencode: malformed string length at byte {offset}")]
    BadLength {
        /// Offset of the length prefix.
        offset: usize,
    },
    /// A string claiming more bytes than the input holds.
    #[error("bencode: string of {len} bytes at byte {offset} runs past the end of the input")]
    LengthOutOfBounds {
        /// Offset of the length prefix.
        offset: usize,
        /// Claimed length.
        len: usize,
    },
    /// A dictionary key that is not a byte string.
    #[error("bencode: dictionary key at byte {offset} is not a byte string")]
    NonStringKey {
        /// Offset of the offending value.
        offset: usize,
    },
    /// A key seen twice in one dictionary.
    #[error("bencode: duplicate dictionary key in the dictionary at byte {offset}")]
    DuplicateKey {
        /// Offset of the duplicate key (or of the dictionary's `d` when found at its end).
        offset: usize,
    },
    /// A dictionary ended after a key, without its value.
    #[error("bencode: dictionary key without a value, ended at byte {offset}")]
    MissingValue {
        /// Offset of the `e`.
        offset: usize,
    },
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("bencode: nesting deeper than {max} at byte {offset}")]
    TooDeep {
        /// Offset of the container that went too deep.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// More values than [`Limits::max_items`].
    #[error("bencode: more than {max} values, at byte {offset}")]
    TooManyItems {
        /// Offset of the value over the limit.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes after a complete top-level value (only [`decode`] and [`decode_with`]).
    #[error("bencode: trailing bytes after the value, at byte {offset}")]
    TrailingBytes {
        /// Offset of the first trailing byte.
        offset: usize,
    },
}

impl BencodeError {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match *self {
            BencodeError::UnexpectedEof { offset }
            | BencodeError::UnexpectedByte { offset, .. }
            | BencodeError::BadInt { offset }
            | BencodeError::IntOverflow { offset }
            | BencodeError::BadLength { offset }
            | BencodeError::LengthOutOfBounds { offset, .. }
            | BencodeError::NonStringKey { offset }
            | BencodeError::DuplicateKey { offset }
            | BencodeError::MissingValue { offset }
            | BencodeError::TooDeep { offset, .. }
            | BencodeError::TooManyItems { offset, .. }
            | BencodeError::TrailingBytes { offset } => offset,
        }
    }
}

/// Decodes exactly one value filling the whole buffer, with default [`Limits`].
pub fn decode(buf: &[u8]) -> Result<Value<'_>, BencodeError> {
    decode_with(buf, Limits::default())
}

/// Decodes one value at the front of `buf` with default [`Limits`] and returns it with the number
/// of bytes it used; whatever follows is left to the caller (ut_metadata `data` messages append
/// the raw piece after the dictionary).
pub fn decode_prefix(buf: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    Decoder::new(buf, Limits::default()).run()
}

/// Decodes exactly one value filling the whole buffer, with the given limits.
pub fn decode_with(buf: &[u8], limits: Limits) -> Result<Value<'_>, BencodeError> {
    let (value, used) = Decoder::new(buf, limits).run()?;
    if used != buf.len() {
        return Err(BencodeError::TrailingBytes { offset: used });
    }
    Ok(value)
}

impl<'a> Dict<'a> {
    /// The value under `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        if self.sorted {
            let i = self.entries.binary_search_by(|(k, _)| (*k).cmp(key)).ok()?;
            self.entries.get(i).map(|(_, v)| v)
        } else {
            self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
        }
    }

    /// The dictionary's exact bytes as received, from `d` to `e` inclusive.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Entries in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the dictionary has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The integer under `key`.
    pub fn get_int(&self, key: &[u8]) -> Option<i64> {
        self.get(key)?.as_int()
    }

    /// The byte string under `key`.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.get(key)?.as_bytes()
    }

    /// The byte string under `key`, if it is valid UTF-8.
    pub fn get_str(&self, key: &[u8]) -> Option<&'a str> {
        self.get(key)?.as_str()
    }

    /// The dictionary under `key`.
    pub fn get_dict(&self, key: &[u8]) -> Option<&Dict<'a>> {
        self.get(key)?.as_dict()
    }

    /// The list under `key`.
    pub fn get_list(&self, key: &[u8]) -> Option<&[Value<'a>]> {
        self.get(key)?.as_list()
    }
}

impl<'a> Value<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as `&str`, if this is one and it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// A deep copy that owns its bytes. Dictionary keys are unique, so no entry is lost; the
    /// received key order is not kept (an [`OwnedValue`] always encodes canonically).
    pub fn to_owned(&self) -> OwnedValue {
        match self {
            Value::Int(n) => OwnedValue::Int(*n),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(l) => OwnedValue::List(l.iter().map(Value::to_owned).collect()),
            Value::Dict(d) => OwnedValue::Dict(
                d.entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned()))
                    .collect(),
            ),
        }
    }
}

/// An owned bencode value, for building messages. Dictionaries are sorted maps, so encoding is
/// always canonical.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dictionary (keys sorted by raw bytes).
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// Canonical bencode of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical bencode of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(n) => {
                out.push(b'i');
                write_int(out, *n);
                out.push(b'e');
            }
            OwnedValue::Bytes(b) => write_bytes(out, b),
            OwnedValue::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            OwnedValue::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    write_bytes(out, k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// A UTF-8 string value.
    pub fn str(s: &str) -> OwnedValue {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }

    /// A byte string value.
    pub fn bytes(b: impl Into<Vec<u8>>) -> OwnedValue {
        OwnedValue::Bytes(b.into())
    }

    /// An integer value.
    pub fn int(n: i64) -> OwnedValue {
        OwnedValue::Int(n)
    }

    /// A list value.
    pub fn list(items: impl IntoIterator<Item = OwnedValue>) -> OwnedValue {
        OwnedValue::List(items.into_iter().collect())
    }

    /// A dictionary builder: `OwnedValue::dict().with("a", OwnedValue::int(1)).build()`.
    pub fn dict() -> DictBuilder {
        DictBuilder::default()
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            OwnedValue::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            OwnedValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value under `key`, if this is a dictionary holding it.
    pub fn get(&self, key: &[u8]) -> Option<&OwnedValue> {
        match self {
            OwnedValue::Dict(d) => d.get(key),
            _ => None,
        }
    }
}

impl From<i64> for OwnedValue {
    fn from(n: i64) -> Self {
        OwnedValue::Int(n)
    }
}

impl From<&str> for OwnedValue {
    fn from(s: &str) -> Self {
        OwnedValue::str(s)
    }
}

impl From<String> for OwnedValue {
    fn from(s: String) -> Self {
        OwnedValue::Bytes(s.into_bytes())
    }
}

impl From<&[u8]> for OwnedValue {
    fn from(b: &[u8]) -> Self {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for OwnedValue {
    fn from(b: Vec<u8>) -> Self {
        OwnedValue::Bytes(b)
    }
}

impl From<Vec<OwnedValue>> for OwnedValue {
    fn from(l: Vec<OwnedValue>) -> Self {
        OwnedValue::List(l)
    }
}

/// Builds an [`OwnedValue::Dict`]; see [`OwnedValue::dict`].
#[derive(Clone, Debug, Default)]
pub struct DictBuilder {
    map: BTreeMap<Vec<u8>, OwnedValue>,
}

impl DictBuilder {
    /// Adds (or replaces) `key`.
    pub fn with(mut self, key: impl AsRef<[u8]>, value: impl Into<OwnedValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds `key` only when `value` is `Some`.
    pub fn with_opt(mut self, key: impl AsRef<[u8]>, value: Option<impl Into<OwnedValue>>) -> Self {
        if let Some(v) = value {
            self.insert(key, v);
        }
        self
    }

    /// Adds (or replaces) `key` in place.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<OwnedValue>) {
        self.map.insert(key.as_ref().to_vec(), value.into());
    }

    /// The finished dictionary.
    pub fn build(self) -> OwnedValue {
        OwnedValue::Dict(self.map)
    }
}

impl From<DictBuilder> for OwnedValue {
    fn from(b: DictBuilder) -> Self {
        b.build()
    }
}

/// Appends `<len>:<bytes>`.
fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_uint(out, b.len() as u64);
    out.push(b':');
    out.extend_from_slice(b);
}

/// Appends the decimal form of `n` without allocating.
fn write_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_uint(out, n.unsigned_abs());
}

fn write_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

// ---------------------------------------------------------------------------------------------
// Decoder

/// An open container on the explicit stack.
enum Frame<'a> {
    List {
        items: Vec<Value<'a>>,
    },
    Dict {
        start: usize,
        entries: Vec<(&'a [u8], Value<'a>)>,
        pending_key: Option<&'a [u8]>,
        sorted: bool,
    },
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: Limits,
    items: usize,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], limits: Limits) -> Self {
        Decoder {
            buf,
            pos: 0,
            limits,
            items: 0,
        }
    }

    fn peek(&self) -> Result<u8, BencodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEof { offset: self.pos })
    }

    fn count_item(&mut self) -> Result<(), BencodeError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(BencodeError::TooManyItems {
                offset: self.pos,
                max: self.limits.max_items,
            });
        }
        Ok(())
    }

    /// Decodes one value from the front; returns it and the bytes used.
    fn run(mut self) -> Result<(Value<'a>, usize), BencodeError> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        loop {
            let at = self.pos;
            let b = self.peek()?;
            let expecting_key = matches!(
                stack.last(),
                Some(Frame::Dict {
                    pending_key: None,
                    ..
                })
            );
            if expecting_key && b != b'e' && !b.is_ascii_digit() {
                return Err(BencodeError::NonStringKey { offset: at });
            }
            let value = match b {
                b'i' => {
                    self.count_item()?;
                    Value::Int(self.int()?)
                }
                b'0'..=b'9' => {
                    self.count_item()?;
                    Value::Bytes(self.bytes()?)
                }
                b'l' | b'd' => {
                    self.count_item()?;
                    if stack.len() >= self.limits.max_depth {
                        return Err(BencodeError::TooDeep {
                            offset: at,
                            max: self.limits.max_depth,
                        });
                    }
                    self.pos += 1;
                    stack.push(if b == b'l' {
                        Frame::List { items: Vec::new() }
                    } else {
                        Frame::Dict {
                            start: at,
                            entries: Vec::new(),
                            pending_key: None,
                            sorted: true,
                        }
                    });
                    continue;
                }
                b'e' => {
                    let Some(frame) = stack.pop() else {
                        return Err(BencodeError::UnexpectedByte {
                            offset: at,
                            byte: b,
                        });
                    };
                    self.pos += 1;
                    self.close(frame, at)?
                }
                _ => {
                    return Err(BencodeError::UnexpectedByte {
                        offset: at,
                        byte: b,
                    })
                }
            };
            // Attach the finished value to its parent, or return it.
            match stack.last_mut() {
                None => return Ok((value, self.pos)),
                Some(Frame::List { items }) => items.push(value),
                Some(Frame::Dict {
                    entries,
                    pending_key,
                    sorted,
                    ..
                }) => match pending_key.take() {
                    Some(key) => entries.push((key, value)),
                    None => {
                        // Guaranteed by the `expecting_key` check above.
                        let Value::Bytes(key) = value else {
                            return Err(BencodeError::NonStringKey { offset: at });
                        };
                        if let Some((last, _)) = entries.last() {
                            match key.cmp(last) {
                                std::cmp::Ordering::Greater => {}
                                std::cmp::Ordering::Equal => {
                                    return Err(BencodeError::DuplicateKey { offset: at })
                                }
                                std::cmp::Ordering::Less => *sorted = false,
                            }
                        }
                        *pending_key = Some(key);
                    }
                },
            }
        }
    }

    /// Turns a closed frame into a value; `end` is the offset of its `e`.
    fn close(&self, frame: Frame<'a>, end: usize) -> Result<Value<'a>, BencodeError> {
        match frame {
            Frame::List { items } => Ok(Value::List(items)),
            Frame::Dict {
                start,
                entries,
                pending_key,
                sorted,
            } => {
                if pending_key.is_some() {
                    return Err(BencodeError::MissingValue { offset: end });
                }
                if !sorted {
                    let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
                    keys.sort_unstable();
                    if keys.windows(2).any(|w| w.first() == w.get(1)) {
                        return Err(BencodeError::DuplicateKey { offset: start });
                    }
                }
                let raw = self
                    .buf
                    .get(start..self.pos)
                    .ok_or(BencodeError::UnexpectedEof { offset: self.pos })?;
                Ok(Value::Dict(Dict {
                    entries,
                    raw,
                    sorted,
                }))
            }
        }
    }

    /// Parses `i<n>e` at `self.pos`.
    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = self.buf.get(start + 1..).unwrap_or_default();
        // "-9223372036854775808" is 20 bytes; allow one more to find the 'e'.
        let Some(len) = rest.iter().take(21).position(|&c| c == b'e') else {
            return Err(if rest.len() < 21 {
                BencodeError::UnexpectedEof {
                    offset: self.buf.len(),
                }
            } else {
                BencodeError::BadInt { offset: start }
            });
        };
        let digits = rest.get(..len).unwrap_or_default();
        let (neg, digits) = match digits.split_first() {
            Some((b'-', d)) => (true, d),
            _ => (false, digits),
        };
        let bad = BencodeError::BadInt { offset: start };
        match digits {
            [] => return Err(bad),
            [b'0'] if neg => return Err(bad),
            [b'0', _, ..] => return Err(bad),
            _ => {}
        }
        let mut n: i64 = 0;
        for &c in digits {
            if !c.is_ascii_digit() {
                return Err(bad);
            }
            let d = i64::from(c - b'0');
            n = n
                .checked_mul(10)
                .and_then(|n| {
                    if neg {
                        n.checked_sub(d)
                    } else {
                        n.checked_add(d)
                    }
                })
                .ok_or(BencodeError::IntOverflow { offset: start })?;
        }
        self.pos = start + 1 + len + 1;
        Ok(n)
    }

    /// Parses `<len>:<bytes>` at `self.pos`; the length is checked against the input first.
    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        // usize::MAX has 20 digits; a longer prefix can only be an error.
        let Some(colon) = rest.iter().take(21).position(|&c| c == b':') else {
            return Err(if rest.len() < 21 && rest.iter().all(u8::is_ascii_digit) {
                BencodeError::UnexpectedEof {
                    offset: self.buf.len(),
                }
            } else {
                BencodeError::BadLength { offset: start }
            });
        };
        let digits = rest.get(..colon).unwrap_or_default();
        let bad = BencodeError::BadLength { offset: start };
        if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
            return Err(bad);
        }
        let mut len: usize = 0;
        for &c in digits {
            if !c.is_ascii_digit() {
                return Err(bad);
            }
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(c - b'0')))
                .ok_or(BencodeError::LengthOutOfBounds {
                    offset: start,
                    len: usize::MAX,
                })?;
        }
        let body = start + colon + 1;
        let out = body
            .checked_add(len)
            .and_then(|end| self.buf.get(body..end))
            .ok_or(BencodeError::LengthOutOfBounds { offset: start, len })?;
        self.pos = body + len;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
