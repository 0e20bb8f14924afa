//! Proof-of-work challenges and the passes they earn, both stateless (HMAC-signed, expiring,
//! bound to the client's /24 or /48 prefix), so they cost the node no memory per client.
//!
//! Protocol (documented in README):
//! 1. a challenged request gets `{"error":"challenge_required","challenge":{"seed":S,
//!    "difficulty":D,"expires":T,"algorithm":"sha256-leading-zero-bits"}}`;
//! 2. the client finds a `nonce` (1–32 ASCII characters) such that SHA-256(`S` + ":" + `nonce`)
//!    starts with `D` zero bits, and POSTs `{"seed":S,"nonce":N}` to `/v1/challenge`;
//! 3. it gets `{"pass":P,"expires":T}` and a cookie `rempart_pass=P`; it sends the pass back as
//!    that cookie or as the header `X-Rempart-Pass: P` until it expires.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Longest nonce accepted.
pub const MAX_NONCE_LEN: usize = 32;
const TAG_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub seed: String,
    pub difficulty: u8,
    pub expires: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("not a challenge this node issued to this network")]
    BadSeed,
    #[error("the challenge expired; ask for a new one")]
    Expired,
    #[error("nonce must be 1 to {MAX_NONCE_LEN} printable ASCII characters")]
    BadNonce,
    #[error("the proof of work is not enough")]
    NotSolved,
}

pub struct Challenges {
    secret: [u8; 32],
    difficulty: u8,
    seed_ttl: u64,
    pass_ttl: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower- or upper-case hex digits only: `u8::from_str_radix` alone would also take a sign
/// (`+f`), giving one pass several spellings (found by the fuzz target `shield_challenge`).
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2)
        || text.len() > 128
        || !text.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Leading zero bits of a byte string.
pub fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut n = 0;
    for b in bytes {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

fn work(seed: &str, nonce: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update(b":");
    h.update(nonce.as_bytes());
    leading_zero_bits(&h.finalize())
}

/// Finds a nonce for a challenge (what a client does; for tests and tools).
pub fn solve(seed: &str, difficulty: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| work(seed, nonce) >= u32::from(difficulty))
        .expect("some nonce works")
}

impl Challenges {
    /// `secret`: shared by the nodes behind one load balancer so passes work on all of them;
    /// `None` draws a random one for this process.
    pub fn new(
        secret: Option<[u8; 32]>,
        difficulty: u8,
        seed_ttl_s: u64,
        pass_ttl_s: u64,
    ) -> Challenges {
        let secret = secret.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).expect("the OS gives random bytes");
            s
        });
        Challenges {
            secret,
            difficulty: difficulty.min(40),
            seed_ttl: seed_ttl_s.max(1),
            pass_ttl: pass_ttl_s.max(1),
        }
    }

    fn tag(&self, kind: &[u8], prefix: &[u8], expires: u64) -> [u8; TAG_LEN] {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("any key length");
        mac.update(kind);
        mac.update(&[prefix.len() as u8]);
        mac.update(prefix);
        mac.update(&expires.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    fn signed(&self, kind: &[u8], prefix: &[u8], expires: u64) -> String {
        let mut bytes = expires.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.tag(kind, prefix, expires));
        hex(&bytes)
    }

    /// Checks a signed value; returns its expiry.
    fn verify(
        &self,
        kind: &[u8],
        prefix: &[u8],
        value: &str,
        now: u64,
    ) -> Result<u64, ChallengeError> {
        let bytes = unhex(value).ok_or(ChallengeError::BadSeed)?;
        if bytes.len() != 8 + TAG_LEN {
            return Err(ChallengeError::BadSeed);
        }
        let expires = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("any key length");
        mac.update(kind);
        mac.update(&[prefix.len() as u8]);
        mac.update(prefix);
        mac.update(&expires.to_be_bytes());
        mac.verify_truncated_left(&bytes[8..])
            .map_err(|_| ChallengeError::BadSeed)?;
        if now >= expires {
            return Err(ChallengeError::Expired);
        }
        Ok(expires)
    }

    pub fn issue(&self, prefix: &[u8], now: u64) -> Challenge {
        let expires = now + self.seed_ttl;
        Challenge {
            seed: self.signed(b"seed", prefix, expires),
            difficulty: self.difficulty,
            expires,
        }
    }

    /// Checks a solution; returns a pass and its expiry.
    pub fn redeem(
        &self,
        prefix: &[u8],
        seed: &str,
        nonce: &str,
        now: u64,
    ) -> Result<(String, u64), ChallengeError> {
        if nonce.is_empty()
            || nonce.len() > MAX_NONCE_LEN
            || !nonce.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ChallengeError::BadNonce);
        }
        self.verify(b"seed", prefix, seed, now)?;
        if work(seed, nonce) < u32::from(self.difficulty) {
            return Err(ChallengeError::NotSolved);
        }
        let expires = now + self.pass_ttl;
        Ok((self.signed(b"pass", prefix, expires), expires))
    }

    /// Whether `pass` is a valid, unexpired pass for this prefix.
    pub fn check_pass(&self, prefix: &[u8], pass: &str, now: u64) -> bool {
        self.verify(b"pass", prefix, pass, now).is_ok()
    }

    pub fn pass_ttl(&self) -> u64 {
        self.pass_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &[u8] = &[127, 10, 0, 0];

    #[test]
    fn a_solved_challenge_earns_a_pass_for_its_network_only() {
        let c = Challenges::new(None, 12, 60, 3_600);
        let challenge = c.issue(NET, 1_000);
        let nonce = solve(&challenge.seed, challenge.difficulty);
        let (pass, expires) = c.redeem(NET, &challenge.seed, &nonce, 1_010).unwrap();
        assert_eq!(expires, 4_610);
        assert!(c.check_pass(NET, &pass, 1_020));
        assert!(
            !c.check_pass(&[127, 11, 0, 0], &pass, 1_020),
            "bound to its prefix"
        );
        assert!(!c.check_pass(NET, &pass, 4_610), "expires");
        // Another node with another secret does not accept it; one with the same secret does.
        assert!(!Challenges::new(None, 12, 60, 3_600).check_pass(NET, &pass, 1_020));
    }

    #[test]
    fn bad_solutions_are_refused() {
        let c = Challenges::new(Some([7; 32]), 16, 60, 3_600);
        let challenge = c.issue(NET, 1_000);
        let nonce = solve(&challenge.seed, 16);
        assert_eq!(
            c.redeem(NET, &challenge.seed, &nonce, 1_060),
            Err(ChallengeError::Expired)
        );
        assert_eq!(
            c.redeem(&[10, 0, 0, 0], &challenge.seed, &nonce, 1_001),
            Err(ChallengeError::BadSeed)
        );
        let weak = (0u64..)
            .map(|n| n.to_string())
            .find(|n| work(&challenge.seed, n) < 16)
            .unwrap();
        assert_eq!(
            c.redeem(NET, &challenge.seed, &weak, 1_001),
            Err(ChallengeError::NotSolved)
        );
        for bad in ["", "a b", &"x".repeat(33), "\u{e9}"] {
            assert_eq!(
                c.redeem(NET, &challenge.seed, bad, 1_001),
                Err(ChallengeError::BadNonce)
            );
        }
        for seed in ["", "zz", "00", &"0".repeat(48), &"f".repeat(1000)] {
            assert!(c.redeem(NET, seed, &nonce, 1_001).is_err());
        }
        let mut forged = challenge.seed.clone();
        forged.replace_range(0..2, "ff");
        assert_eq!(
            c.redeem(NET, &forged, &nonce, 1_001),
            Err(ChallengeError::BadSeed)
        );
        assert!(
            !c.check_pass(NET, &challenge.seed, 1_001),
            "a seed is not a pass"
        );
    }

    #[test]
    fn a_pass_has_one_spelling_but_for_case() {
        let c = Challenges::new(Some([7; 32]), 0, 60, 3_600);
        let (pass, _) = c
            .redeem(NET, &c.issue(NET, 1_000).seed, "1", 1_001)
            .unwrap();
        assert!(c.check_pass(NET, &pass.to_ascii_uppercase(), 1_002));
        // The expiry's leading zero byte, spelled with a sign: the same byte to `from_str_radix`.
        assert!(pass.starts_with("00"));
        assert!(!c.check_pass(NET, &pass.replacen("00", "+0", 1), 1_002));
    }

    #[test]
    fn leading_zeros() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x0F]), 20);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }
}
