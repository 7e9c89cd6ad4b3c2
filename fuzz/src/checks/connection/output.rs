//! The server-output parser: reads everything the server sent as a strict client does (the 101 for
//! the key, then unmasked, minimally encoded frames, control frames whole, fragments in order, text
//! UTF-8, nothing after a close) into a [`ServerOut`] comparable with the model's `Expect`.
//!
//! Owns the reading of server bytes; what they should have been is `model`. Imports `model` (event
//! vocabulary, close-code rules), `frame`, `handshake` and `input`.

use super::super::frame::ref_header;
use super::super::handshake::check_accept_response;
use super::super::input::find;
use super::model::{close_code_later, close_code_valid, Ev, FrameShape};

/// What the server sent after the 101, read by a strict client (RFC 6455 §5: server frames are
/// unmasked, minimally encoded, RSV clear; control frames whole and short; fragments in order; text
/// is UTF-8; nothing after a close).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerOut {
    /// Messages and pongs.
    pub events: Vec<Ev>,
    /// Every complete data frame: FIN, opcode, payload length.
    pub frames: Vec<FrameShape>,
    /// An unfinished message: opcode and payload so far (including the payload of a last data
    /// frame that the output ends inside, as a streamed echo may).
    pub partial: Option<(u8, Vec<u8>)>,
    /// The output ends inside a data frame's payload.
    pub truncated: bool,
    /// The close code, if a close frame was sent.
    pub close: Option<u16>,
    /// Pings the server sent (empty, from idle ticks).
    pub pings: usize,
}

/// Parses the server's output: the 101 response for `key`, then frames.
pub fn parse_server_output(out: &[u8], key: &[u8]) -> Result<ServerOut, String> {
    let head_end = find(out, b"\r\n\r\n").ok_or("no complete 101 response")? + 4;
    check_accept_response(&out[..head_end], key);
    let mut s = &out[head_end..];
    let mut r = ServerOut::default();
    while !s.is_empty() {
        if r.close.is_some() {
            return Err(format!("{} bytes after the close frame", s.len()));
        }
        let (h, bad) = ref_header(s);
        let h = h.ok_or("output ends inside a frame header")?;
        if !bad.is_empty() {
            return Err(format!("server frame breaks {bad:?}"));
        }
        if h.key.is_some() {
            return Err("masked server frame".into());
        }
        if !h.minimal {
            return Err(format!("non-minimal length encoding of {}", h.len));
        }
        let complete = ((s.len() - h.hlen) as u64) >= h.len;
        if !complete && (h.op >= 8 || r.truncated) {
            return Err("output ends inside a control frame".into());
        }
        let p = &s[h.hlen..(h.hlen + h.len as usize).min(s.len())];
        s = &s[h.hlen + p.len()..];
        if !complete {
            // A binary frame's echo streamed behind its header; the rest of it never came in.
            r.truncated = true;
        } else if h.op < 8 {
            r.frames.push((h.fin, h.op, p.len()));
        }
        match h.op {
            0 => {
                let m = r.partial.as_mut().ok_or("continuation without a message")?;
                m.1.extend_from_slice(p);
            }
            1 | 2 => {
                if r.partial.is_some() {
                    return Err("new message inside a fragmented message".into());
                }
                r.partial = Some((h.op, p.to_vec()));
            }
            8 => {
                let code = match p.len() {
                    0 => 1005,
                    1 => return Err("close payload of 1 byte".into()),
                    _ => u16::from_be_bytes([p[0], p[1]]),
                };
                if p.len() >= 2 && !close_code_valid(code) && !close_code_later(code) {
                    return Err(format!("server sent close code {code}"));
                }
                if p.len() > 2 && std::str::from_utf8(&p[2..]).is_err() {
                    return Err("close reason is not UTF-8".into());
                }
                r.close = Some(code);
                continue;
            }
            10 => {
                r.events.push(Ev::Pong(p.to_vec()));
                continue;
            }
            9 if p.is_empty() => {
                r.pings += 1;
                continue;
            }
            op => return Err(format!("unexpected server opcode {op} (payload {} bytes)", p.len())),
        }
        if h.fin && complete {
            let (op, b) = r.partial.take().unwrap_or_default();
            if op == 1 && std::str::from_utf8(&b).is_err() {
                return Err("text message is not UTF-8".into());
            }
            r.events.push(Ev::Msg(op, b));
        }
    }
    Ok(r)
}
