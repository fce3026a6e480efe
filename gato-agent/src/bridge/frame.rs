//! The bridge's frames (`docs/env-protocol.md`): `header_len: u32 LE | payload_len: u32 LE | header (UTF-8 JSON) |
//! payload`, the header listing the payload's arrays by name, dtype, shape and byte offset (little-endian, packed).

use std::io::{Read, Write};

use serde_json::{json, Value};

/// Largest header accepted (bytes): a header is a few hundred bytes of JSON.
pub const MAX_HEADER: usize = 1 << 20;
/// Largest payload accepted (bytes): a rendered frame is under a megabyte.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// Element type of an array in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `uint8` (images).
    U8,
    /// `int64` (discrete values).
    I64,
    /// `float32` (continuous values).
    F32,
    /// `float64` (what numpy produces for Python floats).
    F64,
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "uint8" => Dtype::U8,
            "int64" => Dtype::I64,
            "float32" => Dtype::F32,
            "float64" => Dtype::F64,
            _ => return None,
        })
    }

    /// numpy's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::I64 => "int64",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 => 4,
            Dtype::I64 | Dtype::F64 => 8,
        }
    }
}

/// One named array of a frame, as little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Name (a field name, or `__frame__` for a rendered image).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// `shape.product() * dtype.size()` bytes.
    pub bytes: Vec<u8>,
}

impl Array {
    /// An `int64` array.
    pub fn i64(name: &str, shape: Vec<usize>, v: &[i64]) -> Self {
        Array {
            name: name.into(),
            dtype: Dtype::I64,
            shape,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// A `float32` array.
    pub fn f32(name: &str, shape: Vec<usize>, v: &[f32]) -> Self {
        Array {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as integers (integer dtypes only).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self.dtype {
            Dtype::I64 => Some(
                self.bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            Dtype::U8 => Some(self.bytes.iter().map(|&b| b as i64).collect()),
            _ => None,
        }
    }

    /// The values as `f32` (float dtypes only).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self.dtype {
            Dtype::F32 => Some(
                self.bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                    .collect(),
            ),
            Dtype::F64 => Some(
                self.bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// One message: a JSON object and its arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The header without its `arrays` list.
    pub header: Value,
    /// The payload's arrays.
    pub arrays: Vec<Array>,
}

impl Frame {
    /// A frame of `header` (a JSON object) and `arrays`.
    pub fn new(header: Value, arrays: Vec<Array>) -> Self {
        Frame { header, arrays }
    }

    /// The header's `type`.
    pub fn kind(&self) -> &str {
        self.header["type"].as_str().unwrap_or("")
    }

    /// The array called `name`.
    pub fn array(&self, name: &str) -> Option<&Array> {
        self.arrays.iter().find(|a| a.name == name)
    }

    /// Write the frame.
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut header = self.header.clone();
        let mut offset = 0;
        let described: Vec<Value> = self
            .arrays
            .iter()
            .map(|a| {
                let d = json!({"name": a.name, "dtype": a.dtype.name(), "shape": a.shape, "offset": offset});
                offset += a.bytes.len();
                d
            })
            .collect();
        if let Value::Object(m) = &mut header {
            m.insert("arrays".into(), Value::Array(described));
        }
        let h = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        let mut buf = Vec::with_capacity(8 + h.len() + offset);
        buf.extend_from_slice(&(h.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(offset as u32).to_le_bytes());
        buf.extend_from_slice(&h);
        for a in &self.arrays {
            buf.extend_from_slice(&a.bytes);
        }
        w.write_all(&buf)?;
        w.flush()
    }

    /// Read one frame. `Ok(None)` at the end of the stream before a frame starts; an error names what is wrong
    /// with a malformed or truncated frame.
    pub fn read(r: &mut impl Read) -> Result<Option<Frame>, String> {
        let mut head = [0u8; 8];
        match read_full(r, &mut head)? {
            0 => return Ok(None),
            8 => {}
            n => {
                return Err(format!(
                    "stream ended {n} bytes into a frame's 8-byte prefix"
                ))
            }
        }
        let hlen = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let plen = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if hlen > MAX_HEADER || plen > MAX_PAYLOAD {
            return Err(format!(
                "frame prefix announces a {hlen}-byte header and a {plen}-byte payload (limits {MAX_HEADER} and \
                 {MAX_PAYLOAD}): not a frame"
            ));
        }
        let mut h = vec![0u8; hlen];
        if read_full(r, &mut h)? != hlen {
            return Err(format!("stream ended inside a {hlen}-byte header"));
        }
        let mut payload = vec![0u8; plen];
        if read_full(r, &mut payload)? != plen {
            return Err(format!("stream ended inside a {plen}-byte payload"));
        }
        let mut header: Value =
            serde_json::from_slice(&h).map_err(|e| format!("header is not JSON: {e}"))?;
        if !header.is_object() {
            return Err("header is not a JSON object".into());
        }
        let described = header
            .as_object_mut()
            .and_then(|m| m.remove("arrays"))
            .unwrap_or(Value::Array(Vec::new()));
        let mut arrays = Vec::new();
        for d in described.as_array().ok_or("`arrays` is not a list")? {
            let name = d["name"].as_str().ok_or("an array has no name")?;
            let dtype = d["dtype"].as_str().and_then(Dtype::parse).ok_or_else(|| {
                format!(
                    "array `{name}`: dtype {} is not one of uint8, int64, float32, float64",
                    d["dtype"]
                )
            })?;
            let shape: Vec<usize> = d["shape"]
                .as_array()
                .ok_or_else(|| format!("array `{name}`: no shape"))?
                .iter()
                .map(|x| x.as_u64().map(|x| x as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    format!(
                        "array `{name}`: shape {} is not a list of sizes",
                        d["shape"]
                    )
                })?;
            let offset = d["offset"]
                .as_u64()
                .ok_or_else(|| format!("array `{name}`: no offset"))?
                as usize;
            let n = shape
                .iter()
                .try_fold(dtype.size(), |a, &b| a.checked_mul(b))
                .ok_or_else(|| format!("array `{name}`: shape {shape:?} overflows"))?;
            let bytes = offset
                .checked_add(n)
                .and_then(|end| payload.get(offset..end))
                .ok_or_else(|| {
                    format!("array `{name}`: {n} bytes at offset {offset} run past the {plen}-byte payload")
                })?
                .to_vec();
            arrays.push(Array {
                name: name.into(),
                dtype,
                shape,
                bytes,
            });
        }
        Ok(Some(Frame { header, arrays }))
    }
}

/// Read until `buf` is full or the stream ends; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = Frame::new(
            json!({"type": "observation", "reward": 1.5}),
            vec![
                Array::i64("a", vec![2], &[3, -4]),
                Array::f32("b", vec![1, 2], &[0.5, 2.0]),
            ],
        );
        let mut buf = Vec::new();
        f.write(&mut buf).unwrap();
        let g = Frame::read(&mut buf.as_slice()).unwrap().unwrap();
        assert_eq!(g, f);
        assert_eq!(g.array("a").unwrap().to_i64().unwrap(), vec![3, -4]);
        assert_eq!(g.array("b").unwrap().to_f32().unwrap(), vec![0.5, 2.0]);
        // End of stream between frames is not an error.
        assert_eq!(Frame::read(&mut &[][..]).unwrap(), None);
    }

    #[test]
    fn malformed_frames_are_named() {
        let mut ok = Vec::new();
        Frame::new(
            json!({"type": "x"}),
            vec![Array::i64("a", vec![2], &[1, 2])],
        )
        .write(&mut ok)
        .unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\xff\xff\xff\x7f not a frame".to_vec(), "not a frame"),
            (ok[..5].to_vec(), "8-byte prefix"),
            (ok[..ok.len() - 3].to_vec(), "inside a 16-byte payload"),
            (
                [&4u32.to_le_bytes()[..], &0u32.to_le_bytes(), b"nope"].concat(),
                "not JSON",
            ),
            (
                [&2u32.to_le_bytes()[..], &0u32.to_le_bytes(), b"[]"].concat(),
                "not a JSON object",
            ),
        ];
        for (bytes, want) in cases {
            let err = Frame::read(&mut bytes.as_slice()).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
        // An array that points past the payload.
        let h = br#"{"type":"x","arrays":[{"name":"a","dtype":"int64","shape":[4],"offset":0}]}"#;
        let bytes = [
            &(h.len() as u32).to_le_bytes()[..],
            &8u32.to_le_bytes(),
            h,
            &[0; 8],
        ]
        .concat();
        let err = Frame::read(&mut bytes.as_slice()).unwrap_err();
        assert!(err.contains("run past"), "{err}");
    }
}
