//! Content codings (RFC 9110 8.4.1): the ones langur makes and reads (`gzip`, `br`, `zstd`),
//! the `Accept-Encoding` choice (RFC 9110 12.5.3) and a streaming [`Transcoder`].
//!
//! The codecs are the crates `async-compression` wraps (`flate2`, `brotli`, `zstd`), driven
//! through their `std::io::Write` interfaces: the body arrives as byte chunks already in
//! memory, so a push interface with an explicit flush is all the pipeline needs, and an encoder
//! holds no more than the chunk it was given plus its own window.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING};
use std::io::Write;

/// A content coding of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
    Zstd,
}

impl Coding {
    /// The coding's token as `Content-Encoding` and `Accept-Encoding` spell it.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding a token names (case-insensitive; `x-gzip` is `gzip`, RFC 9110 8.4.1.3).
    /// `None` for codings langur cannot read (`deflate`, `compress`, ...).
    pub fn from_token(t: &str) -> Option<Coding> {
        let t = t.trim();
        [
            ("gzip", Coding::Gzip),
            ("x-gzip", Coding::Gzip),
            ("br", Coding::Br),
            ("zstd", Coding::Zstd),
            ("identity", Coding::Identity),
        ]
        .into_iter()
        .find(|(n, _)| t.eq_ignore_ascii_case(n))
        .map(|(_, c)| c)
    }

    /// The coding of a body with these headers: identity without `Content-Encoding`; `None`
    /// when it names a coding langur cannot read, or more than one coding.
    pub fn of(headers: &HeaderMap) -> Option<Coding> {
        let mut values = headers.get_all(http::header::CONTENT_ENCODING).iter();
        let Some(first) = values.next() else {
            return Some(Coding::Identity);
        };
        if values.next().is_some() {
            return None;
        }
        let text = first.to_str().ok()?;
        if text.contains(',') {
            return None;
        }
        Coding::from_token(text)
    }

    /// `Content-Encoding`'s value for this coding.
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.token())
    }
}

/// How hard an encoder works: `fast`, `default` or `best`, mapped per codec by
/// [`Level::quality`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    Fast,
    #[default]
    Default,
    Best,
}

impl Level {
    /// The codec's own level: gzip 1/6/9 (zlib's scale, 6 as nginx's common setting), brotli
    /// 1/4/11 (4 is brotli's fastest quality with its full context modelling, the usual choice
    /// on the fly), zstd 1/3/19 (3 is zstd's own default).
    pub fn quality(self, c: Coding) -> u32 {
        let [fast, default, best] = match c {
            Coding::Gzip => [1, 6, 9],
            Coding::Br => [1, 4, 11],
            Coding::Zstd => [1, 3, 19],
            Coding::Identity => [0, 0, 0],
        };
        match self {
            Level::Fast => fast,
            Level::Default => default,
            Level::Best => best,
        }
    }
}

/// The q-values a request's `Accept-Encoding` gives (RFC 9110 12.5.3), in thousandths.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accept {
    /// Whether the request has the field at all.
    present: bool,
    gzip: Option<u16>,
    br: Option<u16>,
    zstd: Option<u16>,
    identity: Option<u16>,
    star: Option<u16>,
}

/// A qvalue (`0`, `0.5`, `1.000`; RFC 9110 12.4.2) in thousandths; `None` when malformed.
fn qvalue(s: &str) -> Option<u16> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

impl Accept {
    /// Reads every `Accept-Encoding` field of a request. An element with a malformed q-value
    /// is ignored; the first element naming a coding decides its q-value.
    pub fn parse(h: &HeaderMap) -> Accept {
        let mut a = Accept::default();
        for v in h.get_all(ACCEPT_ENCODING) {
            a.present = true;
            let Ok(text) = v.to_str() else { continue };
            for element in text.split(',') {
                let mut parts = element.split(';');
                let token = parts.next().unwrap_or("").trim();
                if token.is_empty() {
                    continue;
                }
                let mut q = Some(1000);
                for p in parts {
                    if let Some((name, value)) = p.split_once('=') {
                        if name.trim().eq_ignore_ascii_case("q") {
                            q = qvalue(value);
                        }
                    }
                }
                let Some(q) = q else { continue };
                let slot = match Coding::from_token(token) {
                    Some(Coding::Gzip) => &mut a.gzip,
                    Some(Coding::Br) => &mut a.br,
                    Some(Coding::Zstd) => &mut a.zstd,
                    Some(Coding::Identity) => &mut a.identity,
                    None if token == "*" => &mut a.star,
                    None => continue,
                };
                slot.get_or_insert(q);
            }
        }
        a
    }

    /// The q-value of a coding: its own entry, else `*`'s. Without the field only identity is
    /// taken (RFC 9110 allows any coding then, but clients that send none mostly read none);
    /// identity is acceptable unless `identity;q=0`, or `*;q=0` without an identity entry, say
    /// otherwise. An identity not named gets the lowest q-value, below every named coding.
    pub fn q(&self, c: Coding) -> u16 {
        match c {
            Coding::Identity => self.identity.or(self.star).unwrap_or(1),
            _ if !self.present => 0,
            Coding::Gzip => self.gzip.or(self.star).unwrap_or(0),
            Coding::Br => self.br.or(self.star).unwrap_or(0),
            Coding::Zstd => self.zstd.or(self.star).unwrap_or(0),
        }
    }

    /// Whether a body in coding `c` may be sent.
    pub fn accepts(&self, c: Coding) -> bool {
        self.q(c) > 0
    }

    /// The coding to send among `offered` (in the server's order of preference): the highest
    /// q-value wins, the server's order breaks ties, and identity wins only with a strictly
    /// higher q-value than every offered coding. When nothing is acceptable, not even identity,
    /// identity is sent all the same (RFC 9110 12.5.3 lets a server do so rather than answer
    /// 406, as nginx and Apache do).
    pub fn choose(&self, offered: &[Coding]) -> Coding {
        let mut best = (Coding::Identity, 0u16);
        for &c in offered {
            let q = self.q(c);
            if q > best.1 {
                best = (c, q);
            }
        }
        if best.1 == 0 || self.q(Coding::Identity) > best.1 {
            return Coding::Identity;
        }
        best.0
    }
}

/// The codings langur offers when a route does not list its own, in order of preference.
pub const DEFAULT_ORDER: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

/// Decoded output beyond this, from one slice of input, is refused as a decompression bomb
/// (an expansion above 65 536 to 1). It bounds what one push holds beyond [`PUSH_WORK`].
const DECODE_CAP: usize = 2 << 20;
/// Input is handed to a decoder in slices this long, so one slice's output stays bounded.
const DECODE_SLICE: usize = 32;
/// One push stops taking input once it has decoded this much: the work and the memory of a
/// push stay bounded whatever the input expands to.
const PUSH_WORK: usize = 64 * 1024;
/// The largest zstd window a decoder accepts: 8 MiB (`windowLog` 23), the bound RFC 9659
/// sets for the `zstd` content coding; a frame asking for more is refused rather than given
/// its memory.
const ZSTD_MAX_WINDOW_LOG: u32 = 23;

/// A `Vec` that refuses to grow past [`DECODE_CAP`] between drains.
#[derive(Default)]
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > DECODE_CAP {
            return Err(std::io::Error::other("decoded body expands past its bound"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// The brotli window on the fly: 512 KiB (`lgwin` 19, as ngx_brotli's default), not brotli's
/// 4 MiB, so a client's encoder holds less.
const BR_LGWIN: u32 = 19;
/// The zstd window: 512 KiB as well (`windowLog` 19).
const ZSTD_WINDOW_LOG: u32 = 19;

impl Encoder {
    fn new(c: Coding, level: Level) -> std::io::Result<Option<Encoder>> {
        let q = level.quality(c);
        Ok(Some(match c {
            Coding::Identity => return Ok(None),
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(q),
            )),
            Coding::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: q as i32,
                    lgwin: BR_LGWIN as i32,
                    ..Default::default()
                };
                Encoder::Br(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    16 * 1024,
                    &params,
                )))
            }
            Coding::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), q as i32)?;
                e.window_log(ZSTD_WINDOW_LOG)?;
                Encoder::Zstd(e)
            }
        }))
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Br(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// A sync flush: everything written so far can be decoded from the output.
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Br(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Ends the stream; the encoder's last bytes.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Br(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

enum Decoder {
    Gzip(flate2::write::MultiGzDecoder<Capped>),
    Br(Box<brotli::DecompressorWriter<Capped>>),
    Zstd(zstd::stream::write::Decoder<'static, Capped>),
}

impl Decoder {
    fn new(c: Coding) -> std::io::Result<Option<Decoder>> {
        Ok(Some(match c {
            Coding::Identity => return Ok(None),
            Coding::Gzip => Decoder::Gzip(flate2::write::MultiGzDecoder::new(Capped::default())),
            Coding::Br => Decoder::Br(Box::new(brotli::DecompressorWriter::new(
                Capped::default(),
                16 * 1024,
            ))),
            Coding::Zstd => {
                let mut d = zstd::stream::write::Decoder::new(Capped::default())?;
                d.window_log_max(ZSTD_MAX_WINDOW_LOG)?;
                Decoder::Zstd(d)
            }
        }))
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Br(d) => d.write_all(data),
            Decoder::Zstd(d) => d.write_all(data),
        }
    }

    /// Pushes out what the decoder holds back of the input taken so far (flate2 and zstd keep
    /// up to one buffer of output until the next write).
    fn drain(&mut self) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.flush(),
            Decoder::Br(d) => d.flush(),
            Decoder::Zstd(d) => d.flush(),
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Decoder::Gzip(d) => &mut d.get_mut().0,
            Decoder::Br(d) => &mut d.get_mut().0,
            Decoder::Zstd(d) => &mut d.get_mut().0,
        }
    }

    /// The input has ended: what is left comes out, and a stream cut short is an error.
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Br(d) => d.close().map_err(std::io::Error::other),
            Decoder::Zstd(d) => d.flush(),
        }
    }
}

/// A body re-coded as it streams: decoded from one coding and/or encoded into another. Input
/// is pushed in chunks ([`Transcoder::push`] takes what keeps the work and the output of one
/// push bounded), flushed when the source pauses, finished at its end; the
/// output is taken as it grows.
pub struct Transcoder {
    dec: Option<Decoder>,
    enc: Option<Encoder>,
    /// Output when there is no encoder (a decoding only).
    plain: Vec<u8>,
    /// Input taken since the last flush.
    unflushed: bool,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("decodes", &self.dec.is_some())
            .field("encodes", &self.enc.is_some())
            .finish()
    }
}

impl Transcoder {
    /// From a body in `from` to one in `to`; `None` when they are the same coding.
    pub fn new(from: Coding, to: Coding, level: Level) -> std::io::Result<Option<Transcoder>> {
        if from == to {
            return Ok(None);
        }
        Ok(Some(Transcoder {
            dec: Decoder::new(from)?,
            enc: Encoder::new(to, level)?,
            plain: Vec::new(),
            unflushed: false,
        }))
    }

    /// Takes input: up to [`PUSH_WORK`] bytes of `data` when nothing is decoded; when decoding, slice by slice until
    /// the push has decoded [`PUSH_WORK`] bytes. Returns how many bytes of `data` it took (at
    /// least one slice); the caller pushes the rest later. Errors: a corrupt coding, or a
    /// slice that expands past [`DECODE_CAP`].
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.unflushed = true;
        let Some(dec) = &mut self.dec else {
            let data = &data[..data.len().min(PUSH_WORK)];
            if let Some(enc) = &mut self.enc {
                enc.write_all(data)?;
            } else {
                self.plain.extend_from_slice(data);
            }
            return Ok(data.len());
        };
        let (mut taken, mut work) = (0, 0);
        for slice in data.chunks(DECODE_SLICE) {
            dec.write_all(slice)?;
            taken += slice.len();
            let last = taken == data.len();
            if last {
                dec.drain()?;
            }
            let out = dec.out();
            work += out.len();
            match &mut self.enc {
                Some(enc) => {
                    enc.write_all(out)?;
                    out.clear();
                }
                None => self.plain.append(out),
            }
            if work >= PUSH_WORK && !last {
                break;
            }
        }
        Ok(taken)
    }

    /// Whether input was taken since the last flush.
    pub fn unflushed(&self) -> bool {
        self.unflushed
    }

    /// Makes everything taken so far decodable from the output (the source paused).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.unflushed = false;
        match &mut self.enc {
            Some(enc) => enc.flush(),
            None => Ok(()),
        }
    }

    /// The input has ended: the rest of the output is made.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.unflushed = false;
        if let Some(dec) = &mut self.dec {
            dec.finish()?;
            let out = std::mem::take(dec.out());
            match &mut self.enc {
                Some(enc) => enc.write_all(&out)?,
                None => self.plain.extend_from_slice(&out),
            }
        }
        if let Some(enc) = self.enc.take() {
            let rest = enc.finish()?;
            self.plain.extend_from_slice(&rest);
        }
        Ok(())
    }

    /// Bytes of output waiting.
    pub fn pending(&mut self) -> usize {
        self.plain.len() + self.enc.as_mut().map_or(0, |e| e.out().len())
    }

    /// Takes the output made so far.
    pub fn take(&mut self) -> Bytes {
        let mut out = std::mem::take(&mut self.plain);
        if let Some(enc) = &mut self.enc {
            let e = enc.out();
            if out.is_empty() {
                out = std::mem::take(e);
            } else {
                out.append(e);
            }
        }
        Bytes::from(out)
    }
}

/// Re-codes a whole body in memory (a stored form made at once, and tests).
pub fn transcode(body: &[u8], from: Coding, to: Coding, level: Level) -> std::io::Result<Bytes> {
    let Some(mut t) = Transcoder::new(from, to, level)? else {
        return Ok(Bytes::copy_from_slice(body));
    };
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = t.push(rest)?;
        rest = &rest[n..];
        out.extend_from_slice(&t.take());
    }
    t.finish()?;
    out.extend_from_slice(&t.take());
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Accept {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        Accept::parse(&h)
    }

    #[test]
    fn q_values_and_server_order_choose() {
        let order = DEFAULT_ORDER;
        assert_eq!(
            accept("gzip, deflate, br, zstd").choose(&order),
            Coding::Zstd
        );
        assert_eq!(accept("gzip, deflate, br").choose(&order), Coding::Br);
        assert_eq!(accept("gzip;q=1.0, br;q=0.5").choose(&order), Coding::Gzip);
        assert_eq!(accept("GZIP").choose(&order), Coding::Gzip);
        assert_eq!(accept("x-gzip").choose(&order), Coding::Gzip);
        assert_eq!(accept("*").choose(&order), Coding::Zstd);
        assert_eq!(accept("*;q=0.3, br;q=0").choose(&order), Coding::Zstd);
        assert_eq!(accept("br;q=0, *").choose(&[Coding::Br]), Coding::Identity);
        assert_eq!(
            accept("gzip;q=0.5, identity").choose(&order),
            Coding::Identity
        );
        assert_eq!(accept("gzip;q=0.5").choose(&order), Coding::Gzip);
        assert_eq!(accept("deflate").choose(&order), Coding::Identity);
        assert_eq!(accept("").choose(&order), Coding::Identity);
        assert_eq!(
            Accept::parse(&HeaderMap::new()).choose(&order),
            Coding::Identity
        );
        assert_eq!(
            accept("gzip;q=2, br;q=0.x, zstd;q=0.001").choose(&order),
            Coding::Zstd
        );
        assert_eq!(accept("gzip;q=0").choose(&order), Coding::Identity);
        assert_eq!(
            accept("gzip, br").choose(&[Coding::Gzip, Coding::Br]),
            Coding::Gzip
        );
    }

    #[test]
    fn identity_is_acceptable_unless_excluded() {
        assert!(accept("gzip").accepts(Coding::Identity));
        assert!(!accept("gzip, identity;q=0").accepts(Coding::Identity));
        assert!(!accept("*;q=0").accepts(Coding::Identity));
        assert!(accept("*;q=0, identity").accepts(Coding::Identity));
        assert!(!accept("identity;q=0").accepts(Coding::Gzip));
        // Nothing acceptable: identity is sent all the same.
        assert_eq!(
            accept("identity;q=0").choose(&DEFAULT_ORDER),
            Coding::Identity
        );
        assert_eq!(
            accept("identity;q=0, gzip;q=0.1").choose(&DEFAULT_ORDER),
            Coding::Gzip
        );
    }

    #[test]
    fn every_codec_round_trips_through_every_other() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of the text\n", i % 977).into_bytes())
            .collect();
        for to in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let enc = transcode(&text, Coding::Identity, to, Level::Fast).unwrap();
            assert!(enc.len() < text.len() / 4, "{to:?}");
            let back = transcode(&enc, to, Coding::Identity, Level::Fast).unwrap();
            assert_eq!(back, text, "{to:?}");
            for via in [Coding::Gzip, Coding::Br, Coding::Zstd] {
                let other = transcode(&enc, to, via, Level::Fast).unwrap();
                let plain = transcode(&other, via, Coding::Identity, Level::Fast).unwrap();
                assert_eq!(plain, text, "{to:?} -> {via:?}");
            }
        }
    }

    #[test]
    fn a_flush_makes_what_was_taken_decodable() {
        for c in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let mut t = Transcoder::new(Coding::Identity, c, Level::Default)
                .unwrap()
                .unwrap();
            t.push(b"data: first event\n\n").unwrap();
            t.flush().unwrap();
            let part = t.take();
            let mut d = Transcoder::new(c, Coding::Identity, Level::Default)
                .unwrap()
                .unwrap();
            d.push(&part).unwrap();
            assert_eq!(&d.take()[..], b"data: first event\n\n", "{c:?}");
        }
    }

    #[test]
    fn a_cut_or_corrupt_body_is_an_error() {
        let enc = transcode(&[b'a'; 10_000], Coding::Identity, Coding::Gzip, Level::Fast).unwrap();
        assert!(transcode(
            &enc[..enc.len() / 2],
            Coding::Gzip,
            Coding::Identity,
            Level::Fast
        )
        .is_err());
        assert!(transcode(
            b"not gzip at all",
            Coding::Gzip,
            Coding::Identity,
            Level::Fast
        )
        .is_err());
    }

    #[test]
    fn a_decompression_bomb_is_decoded_a_bounded_step_at_a_time() {
        let zeros = vec![0u8; 16 << 20];
        for c in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let bomb = transcode(&zeros, Coding::Identity, c, Level::Default).unwrap();
            let other = if c == Coding::Gzip {
                Coding::Zstd
            } else {
                Coding::Gzip
            };
            for to in [Coding::Identity, other] {
                let mut t = Transcoder::new(c, to, Level::Fast).unwrap().unwrap();
                let (mut rest, mut pushes) = (&bomb[..], 0);
                let outcome = loop {
                    if rest.is_empty() {
                        break t.finish();
                    }
                    match t.push(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) => break Err(e),
                    }
                    pushes += 1;
                    // What one push holds: its work bound and one slice's output.
                    assert!(t.pending() <= PUSH_WORK + DECODE_CAP, "{c:?}");
                    t.take();
                };
                // A body that expands past the bound is refused, never held.
                if c != Coding::Br {
                    outcome.unwrap();
                    assert!(pushes >= (16 << 20) / (PUSH_WORK + DECODE_CAP), "{c:?}");
                }
            }
        }
    }

    #[test]
    fn a_zstd_frame_asking_for_a_window_over_8_mib_is_refused() {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(27).unwrap();
        e.long_distance_matching(true).unwrap();
        e.write_all(&[7u8; 4096]).unwrap();
        let frame = e.finish().unwrap();
        assert!(transcode(&frame, Coding::Zstd, Coding::Identity, Level::Fast).is_err());
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(23).unwrap();
        e.write_all(&[7u8; 4096]).unwrap();
        let frame = e.finish().unwrap();
        let out = transcode(&frame, Coding::Zstd, Coding::Identity, Level::Fast).unwrap();
        assert_eq!(out.len(), 4096);
    }
}
