//! Peer authentication: the cluster secret and the signature every peer request carries.
//!
//! A new cluster creates a secret (the *join token*) in its data directory
//! (`cluster-secret`, mode 0600); a node joins with that token and keeps it the same way. Every
//! request on the peer listener, and a join request on the client API, carries
//! `x-switchyard-peer-auth: v1 t=MILLIS n=NONCE s=SIGNATURE`, where the signature is
//! HMAC-SHA256, keyed by the secret, over the method, the path and query, the time, the nonce
//! and the SHA-256 of the body. The receiver refuses a request whose time is more than
//! [`WINDOW_MS`] away from its own clock, a nonce it has already seen within that window (a
//! replay), and a wrong signature; the secret itself never crosses the network.
//!
//! A stream (the leader's appends to a follower over one WebSocket) is opened by a signed
//! request; each frame after it, both ways, carries an HMAC-SHA256 tag under a key derived from
//! the secret, the opening request's nonce and the frame's direction, over the frame's
//! sequence number and payload ([`FrameSealer`], [`FrameOpener`]). A frame that was altered,
//! injected, dropped, replayed or moved to another stream or direction fails its tag, so the
//! stream is as safe as signed requests without TLS.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The header that carries a peer request's signature.
pub const HEADER: &str = "x-switchyard-peer-auth";
/// The client API route a joining node posts to, signed like a peer request.
pub const JOIN_PATH: &str = "/v1/cluster/members";
/// The file in the data directory that holds the cluster secret.
pub const SECRET_FILE: &str = "cluster-secret";
/// How far a request's time may be from the receiver's clock (keep peers' clocks within this).
pub const WINDOW_MS: i64 = 60_000;
/// Most nonces remembered; beyond it peer requests are refused until old ones expire.
const MAX_NONCES: usize = 1_000_000;

type HmacSha256 = Hmac<Sha256>;

/// A cluster's join token: the shared secret peers sign their requests with.
#[derive(Clone)]
pub struct ClusterSecret {
    token: String,
    key: [u8; 32],
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl PartialEq for ClusterSecret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.key, &other.key)
    }
}

/// Why a peer request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedPeer {
    #[error("no {HEADER} header: peer requests must be signed with the cluster's join token")]
    Missing,
    #[error("malformed {HEADER} header: expected `v1 t=MILLIS n=NONCE s=SIGNATURE`")]
    Malformed,
    #[error(
        "the request's time is {0} ms away from this node's clock (at most {WINDOW_MS} allowed): \
         keep the members' clocks in sync"
    )]
    Skewed(i64),
    #[error("this request was already received (a replay)")]
    Replayed,
    #[error("wrong signature: the sender does not hold this cluster's join token")]
    BadSignature,
    #[error("too many peer requests in the last minute; retry later")]
    Busy,
}

impl ClusterSecret {
    /// Shortest token accepted (an operator may choose one).
    pub const MIN_LEN: usize = 24;
    /// Longest token accepted.
    pub const MAX_LEN: usize = 256;

    /// A new random token (`swyd1.` then 64 hex digits: 256 bits from the OS).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random number generator works");
        let mut token = String::from("swyd1.");
        for b in bytes {
            token.push_str(&format!("{b:02x}"));
        }
        Self::parse(&token).expect("a generated token is valid")
    }

    /// A token as given by an operator: 24 to 256 visible ASCII characters.
    pub fn parse(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&token.len())
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "a join token is {} to {} visible ASCII characters without spaces (make one \
                 with `switchyard cluster join-token --new`)",
                Self::MIN_LEN,
                Self::MAX_LEN
            ));
        }
        let mut h = Sha256::new();
        h.update(b"switchyard cluster secret v1\0");
        h.update(token.as_bytes());
        Ok(Self {
            token: token.to_string(),
            key: h.finalize().into(),
        })
    }

    /// The token, as `switchyard cluster join-token` prints it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Where a data directory keeps its secret.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(SECRET_FILE)
    }

    /// The secret kept in a data directory, if it has one.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, String> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Keep the secret in a data directory: readable by its owner only, fsynced, then renamed
    /// into place.
    pub fn store(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(data_dir);
        let tmp = data_dir.join(format!("{SECRET_FILE}.tmp"));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(self.token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    }

    fn mac(&self, method: &str, path: &str, time_ms: i64, nonce: &str, body: &[u8]) -> [u8; 32] {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        let digest: [u8; 32] = Sha256::digest(body).into();
        m.update(format!("v1\n{method}\n{path}\n{time_ms}\n{nonce}\n").as_bytes());
        m.update(&digest);
        m.finalize().into_bytes().into()
    }

    /// The header value that signs a request (`path` with its query).
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> String {
        self.sign_with_nonce(method, path, body).0
    }

    /// [`Self::sign`], and the nonce the header carries (a stream's frames are keyed by it).
    pub fn sign_with_nonce(&self, method: &str, path: &str, body: &[u8]) -> (String, String) {
        let mut n = [0u8; 16];
        getrandom::fill(&mut n).expect("the OS random number generator works");
        let nonce = hex(&n);
        let t = now_ms();
        let s = hex(&self.mac(method, path, t, &nonce, body));
        (format!("v1 t={t} n={nonce} s={s}"), nonce)
    }

    /// The key of the frames sent one way on the stream opened by the request with `nonce`.
    fn frame_key(&self, nonce: &str, direction: Direction) -> [u8; 32] {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        let dir = match direction {
            Direction::ToFollower => "to-follower",
            Direction::ToLeader => "to-leader",
        };
        m.update(format!("v1 stream\n{nonce}\n{dir}\n").as_bytes());
        m.finalize().into_bytes().into()
    }

    /// Seals the frames this side sends one way on a stream.
    pub fn frame_sealer(&self, nonce: &str, direction: Direction) -> FrameSealer {
        FrameSealer {
            key: self.frame_key(nonce, direction),
            next: 0,
        }
    }

    /// Opens (checks) the frames this side receives one way on a stream.
    pub fn frame_opener(&self, nonce: &str, direction: Direction) -> FrameOpener {
        FrameOpener {
            key: self.frame_key(nonce, direction),
            next: 0,
        }
    }
}

/// Which way a stream's frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the node that opened the stream (the leader's appends).
    ToFollower,
    /// Back to it (the follower's answers).
    ToLeader,
}

/// Bytes of the tag in front of each frame's payload.
pub const FRAME_TAG_BYTES: usize = 32;

fn frame_tag(key: &[u8; 32], seq: u64, payload: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(&seq.to_be_bytes());
    m.update(payload);
    m.finalize().into_bytes().into()
}

/// Tags the frames sent one way, numbering them from 0.
pub struct FrameSealer {
    key: [u8; 32],
    next: u64,
}

impl FrameSealer {
    /// The frame carrying `payload`: its tag, then the payload.
    pub fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        let tag = frame_tag(&self.key, self.next, payload);
        self.next += 1;
        let mut frame = Vec::with_capacity(FRAME_TAG_BYTES + payload.len());
        frame.extend_from_slice(&tag);
        frame.extend_from_slice(payload);
        frame
    }
}

/// Checks the frames received one way: each must be the next in sequence, unaltered.
pub struct FrameOpener {
    key: [u8; 32],
    next: u64,
}

/// Why a stream's frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedFrame {
    #[error("a frame shorter than its {FRAME_TAG_BYTES}-byte tag")]
    Short,
    #[error(
        "frame {0}: wrong tag (altered, out of order, replayed, or not from this stream's peer)"
    )]
    BadTag(u64),
}

impl FrameOpener {
    /// The payload of the next frame, if its tag is right.
    pub fn open<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], RefusedFrame> {
        if frame.len() < FRAME_TAG_BYTES {
            return Err(RefusedFrame::Short);
        }
        let (tag, payload) = frame.split_at(FRAME_TAG_BYTES);
        if !constant_time_eq(&frame_tag(&self.key, self.next, payload), tag) {
            return Err(RefusedFrame::BadTag(self.next));
        }
        self.next += 1;
        Ok(payload)
    }
}

/// The nonce (`n=`) of a signature header.
pub fn nonce_of(header: &str) -> Option<&str> {
    header
        .split(' ')
        .find_map(|p| p.strip_prefix("n="))
        .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks signed requests against one secret and remembers recent nonces.
pub struct Verifier {
    secret: ClusterSecret,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    set: HashSet<u128>,
    /// (arrival time, nonce), oldest first.
    order: VecDeque<(i64, u128)>,
}

impl Verifier {
    pub fn new(secret: ClusterSecret) -> Self {
        Self {
            secret,
            seen: Mutex::new(Seen::default()),
        }
    }

    pub fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// Check one request's signature header.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        header: Option<&str>,
        body: &[u8],
    ) -> Result<(), RefusedPeer> {
        let header = header.ok_or(RefusedPeer::Missing)?;
        let mut parts = header.split(' ');
        if parts.next() != Some("v1") {
            return Err(RefusedPeer::Malformed);
        }
        let (mut t, mut n, mut s) = (None, None, None);
        for p in parts {
            match p.split_once('=') {
                Some(("t", v)) => t = v.parse::<i64>().ok(),
                Some(("n", v)) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    n = Some(v)
                }
                Some(("s", v)) => s = unhex(v),
                _ => return Err(RefusedPeer::Malformed),
            }
        }
        let (Some(t), Some(n), Some(s)) = (t, n, s) else {
            return Err(RefusedPeer::Malformed);
        };
        let nonce = u128::from_str_radix(n, 16).map_err(|_| RefusedPeer::Malformed)?;
        let now = now_ms();
        if (now - t).abs() > WINDOW_MS {
            return Err(RefusedPeer::Skewed(now - t));
        }
        if !constant_time_eq(&self.secret.mac(method, path, t, n, body), &s) {
            return Err(RefusedPeer::BadSignature);
        }
        let mut seen = self.seen.lock().expect("nonce cache lock");
        while seen
            .order
            .front()
            .is_some_and(|(at, _)| *at < now - 2 * WINDOW_MS)
        {
            let (_, old) = seen.order.pop_front().expect("checked");
            seen.set.remove(&old);
        }
        if seen.set.contains(&nonce) {
            return Err(RefusedPeer::Replayed);
        }
        if seen.set.len() >= MAX_NONCES {
            return Err(RefusedPeer::Busy);
        }
        seen.set.insert(nonce);
        seen.order.push_back((now, nonce));
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Compare secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_passes_once_and_any_change_is_refused() {
        let s = ClusterSecret::generate();
        let v = Verifier::new(s.clone());
        let h = s.sign("POST", "/raft/append", b"body");
        assert_eq!(v.verify("POST", "/raft/append", Some(&h), b"body"), Ok(()));
        // The same request again is a replay.
        assert_eq!(
            v.verify("POST", "/raft/append", Some(&h), b"body"),
            Err(RefusedPeer::Replayed)
        );
        let h = s.sign("POST", "/raft/append", b"body");
        for (m, p, b) in [
            ("POST", "/raft/append", &b"bodY"[..]),
            ("POST", "/raft/vote", b"body"),
            ("PUT", "/raft/append", b"body"),
        ] {
            assert_eq!(
                v.verify(m, p, Some(&h), b),
                Err(RefusedPeer::BadSignature),
                "{m} {p}"
            );
        }
        let other = Verifier::new(ClusterSecret::generate());
        assert_eq!(
            other.verify("POST", "/raft/append", Some(&h), b"body"),
            Err(RefusedPeer::BadSignature)
        );
        assert_eq!(
            v.verify("POST", "/raft/append", None, b"body"),
            Err(RefusedPeer::Missing)
        );
        assert_eq!(
            v.verify("POST", "/raft/append", Some("Bearer x"), b"body"),
            Err(RefusedPeer::Malformed)
        );
    }

    #[test]
    fn a_stream_frame_opens_once_in_order_and_only_on_its_stream_and_way() {
        let s = ClusterSecret::generate();
        let (h, nonce) = s.sign_with_nonce("GET", "/raft/stream", b"");
        assert_eq!(nonce_of(&h), Some(nonce.as_str()));
        let mut seal = s.frame_sealer(&nonce, Direction::ToFollower);
        let frames: Vec<_> = (0..3).map(|i| seal.seal(&[i; 10])).collect();

        let mut open = s.frame_opener(&nonce, Direction::ToFollower);
        assert_eq!(open.open(&frames[0]), Ok(&[0u8; 10][..]));
        // Replayed, or skipping one: the sequence number is in the tag.
        assert_eq!(open.open(&frames[0]), Err(RefusedFrame::BadTag(1)));
        assert_eq!(open.open(&frames[2]), Err(RefusedFrame::BadTag(1)));
        let mut altered = frames[1].clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(open.open(&altered), Err(RefusedFrame::BadTag(1)));
        assert_eq!(open.open(&frames[1][..5]), Err(RefusedFrame::Short));
        assert_eq!(open.open(&frames[1]), Ok(&[1u8; 10][..]));

        // Another direction, another stream, another secret: none opens it.
        let (_, other_nonce) = s.sign_with_nonce("GET", "/raft/stream", b"");
        for mut wrong in [
            s.frame_opener(&nonce, Direction::ToLeader),
            s.frame_opener(&other_nonce, Direction::ToFollower),
            ClusterSecret::generate().frame_opener(&nonce, Direction::ToFollower),
        ] {
            assert_eq!(wrong.open(&frames[0]), Err(RefusedFrame::BadTag(0)));
        }
    }

    #[test]
    fn an_old_signature_is_refused() {
        let s = ClusterSecret::generate();
        let v = Verifier::new(s.clone());
        let t = now_ms() - WINDOW_MS - 5_000;
        let n = "0".repeat(32);
        let sig = hex(&s.mac("POST", "/raft/vote", t, &n, b""));
        let h = format!("v1 t={t} n={n} s={sig}");
        assert!(matches!(
            v.verify("POST", "/raft/vote", Some(&h), b""),
            Err(RefusedPeer::Skewed(_))
        ));
    }

    #[test]
    fn tokens_are_checked_and_kept_in_the_data_directory() {
        assert!(ClusterSecret::parse("short").is_err());
        assert!(ClusterSecret::parse("has a space in it, and is long enough").is_err());
        let chosen = ClusterSecret::parse("an-operator-chosen-token-1234").unwrap();
        assert_eq!(chosen.token(), "an-operator-chosen-token-1234");
        let dir = tempfile::TempDir::new().unwrap();
        assert_eq!(ClusterSecret::load(dir.path()).unwrap(), None);
        let s = ClusterSecret::generate();
        assert!(s.token().starts_with("swyd1.") && s.token().len() == 70);
        s.store(dir.path()).unwrap();
        assert_eq!(ClusterSecret::load(dir.path()).unwrap(), Some(s));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ClusterSecret::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
