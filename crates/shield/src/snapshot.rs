//! The existence filter's bytes on disk, so that a restarted node refuses unknown numbers from its
//! first request instead of answering "maybe" until it has listed every stored number again.
//!
//! The bytes come back from disk, possibly truncated by a crash, damaged, written by another
//! version, or crafted: [`decode`] checks everything before anything is trusted and never panics
//! (unit tests below feed it truncations, flipped bytes and wrong versions). A refused snapshot
//! only costs a rebuild; a wrongly accepted one could hide parcels, so the checks are strict:
//!
//! ```text
//! magic "RMPXFLT\n" | version u32 | hash probe u64 | clean u8 | position i64 | written_unix_s u64
//! | numbers u64 | seed u64 | segment_length u32 | segment_length_mask u32 | segment_count_length u32
//! | fingerprints: len u64, bytes | recent keys: count u64, u64 each | SHA-256 of all before (32)
//! ```
//!
//! Little-endian throughout. The hash probe is the filter's key of a fixed number: the key hash
//! (std's `DefaultHasher`) is not promised stable across Rust releases, and a snapshot read with
//! another hash would refuse known numbers, so a different probe refuses the snapshot.

use sha2::{Digest, Sha256};
use xorf::{BinaryFuse8, Descriptor};

/// The format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"RMPXFLT\n";
const CHECKSUM_LEN: usize = 32;
/// The number whose key is written as the hash probe.
const PROBE: &[u8] = b"RR123456785FR";
/// Largest segment the filter's construction uses (xorf caps it at 2^18).
const MAX_SEGMENT_LENGTH: u32 = 1 << 18;

/// What a snapshot says about itself, beyond the filter. The server gives it meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Written at a clean stop, after the node's last acknowledged write.
    pub clean: bool,
    /// The store's position the snapshot covers (a shared store's change cursor); 0 for none.
    pub position: i64,
    /// When it was written, seconds since the Unix epoch.
    pub written_unix_s: u64,
}

/// Why a snapshot was not written or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("the filter holds no complete build to save")]
    NotBuilt,
    #[error("truncated")]
    Truncated,
    #[error("not an existence filter snapshot")]
    NotASnapshot,
    #[error("format version {0}; this build reads version {SNAPSHOT_VERSION}")]
    Version(u32),
    #[error("checksum mismatch (damaged)")]
    Checksum,
    #[error("written by a build that hashes numbers differently")]
    HashChanged,
    #[error("inconsistent: {0}")]
    Inconsistent(&'static str),
    /// Sound, but refused by the caller: it may not cover the store.
    #[error("does not cover the store: {0}")]
    Stale(String),
}

/// A snapshot's content, checked.
pub(crate) struct Decoded {
    pub meta: SnapshotMeta,
    pub numbers: usize,
    pub base: BinaryFuse8,
    pub recent: Vec<u64>,
}

/// The snapshot bytes of a filter and the keys added since its build.
pub(crate) fn encode(
    meta: SnapshotMeta,
    probe: u64,
    numbers: usize,
    base: &BinaryFuse8,
    recent: &[u64],
) -> Vec<u8> {
    let d = &base.descriptor;
    let mut out = Vec::with_capacity(96 + base.fingerprints.len() + recent.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&probe.to_le_bytes());
    out.push(u8::from(meta.clean));
    out.extend_from_slice(&meta.position.to_le_bytes());
    out.extend_from_slice(&meta.written_unix_s.to_le_bytes());
    out.extend_from_slice(&(numbers as u64).to_le_bytes());
    out.extend_from_slice(&d.seed.to_le_bytes());
    out.extend_from_slice(&d.segment_length.to_le_bytes());
    out.extend_from_slice(&d.segment_length_mask.to_le_bytes());
    out.extend_from_slice(&d.segment_count_length.to_le_bytes());
    out.extend_from_slice(&(base.fingerprints.len() as u64).to_le_bytes());
    out.extend_from_slice(&base.fingerprints);
    out.extend_from_slice(&(recent.len() as u64).to_le_bytes());
    for k in recent {
        out.extend_from_slice(&k.to_le_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads a snapshot written by [`encode`], refusing anything it cannot fully check. `probe` is
/// this build's key of the probe number; `max_recent` the most recent keys the filter takes.
pub(crate) fn decode(
    bytes: &[u8],
    probe: u64,
    max_recent: usize,
) -> Result<Decoded, SnapshotError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = r.u32()?;
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version(version));
    }
    let body_len = bytes
        .len()
        .checked_sub(CHECKSUM_LEN)
        .ok_or(SnapshotError::Truncated)?;
    if body_len < r.at || Sha256::digest(&bytes[..body_len])[..] != bytes[body_len..] {
        return Err(SnapshotError::Checksum);
    }
    r.bytes = &bytes[..body_len];
    if r.u64()? != probe {
        return Err(SnapshotError::HashChanged);
    }
    let clean = match r.take(1)?[0] {
        0 => false,
        1 => true,
        _ => return Err(SnapshotError::Inconsistent("clean flag")),
    };
    let meta = SnapshotMeta {
        clean,
        position: r.u64()? as i64,
        written_unix_s: r.u64()?,
    };
    let numbers =
        usize::try_from(r.u64()?).map_err(|_| SnapshotError::Inconsistent("number count"))?;
    let descriptor = Descriptor {
        seed: r.u64()?,
        segment_length: r.u32()?,
        segment_length_mask: r.u32()?,
        segment_count_length: r.u32()?,
    };
    let fingerprints_len = r.len()?;
    check_layout(&descriptor, fingerprints_len)?;
    let fingerprints: Box<[u8]> = r.take(fingerprints_len)?.into();
    let recent_count = r.len()?;
    if recent_count > max_recent {
        return Err(SnapshotError::Inconsistent(
            "more recent keys than the filter takes",
        ));
    }
    let recent_bytes = r.take(
        recent_count
            .checked_mul(8)
            .ok_or(SnapshotError::Truncated)?,
    )?;
    let recent = recent_bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    if r.at != r.bytes.len() {
        return Err(SnapshotError::Inconsistent("trailing bytes"));
    }
    Ok(Decoded {
        meta,
        numbers,
        base: BinaryFuse8 {
            descriptor,
            fingerprints,
        },
        recent,
    })
}

/// Whether a lookup in a filter of this shape stays inside its fingerprints. xorf indexes
/// without checking: a lookup reads slots h0 < `segment_count_length`, then the same slot ±
/// `segment_length_mask` one and two segments on, so the array must reach two whole segments
/// past `segment_count_length`, with `segment_length` a power of two and the mask one less.
fn check_layout(d: &Descriptor, fingerprints_len: usize) -> Result<(), SnapshotError> {
    let sl = d.segment_length;
    if sl == 0 || !sl.is_power_of_two() || sl > MAX_SEGMENT_LENGTH {
        return Err(SnapshotError::Inconsistent("segment length"));
    }
    if d.segment_length_mask != sl - 1 {
        return Err(SnapshotError::Inconsistent("segment length mask"));
    }
    if d.segment_count_length == 0 || !d.segment_count_length.is_multiple_of(sl) {
        return Err(SnapshotError::Inconsistent("segment count length"));
    }
    // Indices are computed in u32: the whole array must fit there.
    let needed = u64::from(d.segment_count_length) + 2 * u64::from(sl);
    if needed > u64::from(u32::MAX) || (fingerprints_len as u64) < needed {
        return Err(SnapshotError::Inconsistent(
            "fingerprints shorter than the layout",
        ));
    }
    Ok(())
}

/// Reads fields in order; every read checks the length first.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(n).ok_or(SnapshotError::Truncated)?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or(SnapshotError::Truncated)?;
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length field: at most what is left to read (a hostile length allocates nothing).
    fn len(&mut self) -> Result<usize, SnapshotError> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(SnapshotError::Truncated);
        }
        Ok(n as usize)
    }
}

/// The probe's key under `key`, the filter's hash.
pub(crate) fn probe(key: impl Fn(&[u8]) -> u64) -> u64 {
    key(PROBE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExistenceFilter, Verdict};

    fn n(i: u64) -> [u8; 13] {
        let mut out = *b"6A00000000000";
        out[2..].copy_from_slice(format!("{i:011}").as_bytes());
        out
    }

    const META: SnapshotMeta = SnapshotMeta {
        clean: true,
        position: 42,
        written_unix_s: 1_790_000_000,
    };

    /// A filter of `built` numbers plus `added` numbers inserted since, and its snapshot.
    fn saved(built: u64, added: u64) -> (ExistenceFilter, Vec<u8>) {
        let f = ExistenceFilter::new(1_000);
        f.begin_rebuild();
        let known: Vec<[u8; 13]> = (0..built).map(n).collect();
        f.finish_rebuild(&known).unwrap();
        let more: Vec<[u8; 13]> = (500_000..500_000 + added).map(n).collect();
        f.insert(more.iter().map(|x| &x[..]));
        let bytes = f.snapshot(META).unwrap();
        (f, bytes)
    }

    /// Recomputes the checksum after a deliberate edit, as a crafted file would.
    fn reseal(bytes: &mut [u8]) {
        let body = bytes.len() - CHECKSUM_LEN;
        let sum = Sha256::digest(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum);
    }

    fn refused(bytes: &[u8]) -> SnapshotError {
        let f = ExistenceFilter::new(1_000);
        let e = f.restore(bytes, |_| Ok(())).expect_err("must be refused");
        assert!(
            !f.is_built(),
            "a refused snapshot leaves the filter unbuilt"
        );
        assert_eq!(f.check(&n(1)), Verdict::Maybe);
        e
    }

    #[test]
    fn a_restored_filter_answers_like_the_saved_one() {
        let (saved, bytes) = saved(10_000, 300);
        let f = ExistenceFilter::new(1_000);
        assert_eq!(f.restore(&bytes, |_| Ok(())).unwrap(), META);
        assert!(f.is_built());
        assert_eq!((f.len(), f.recent_len()), (10_000, 300));
        for i in (0..10_000).chain(500_000..500_300) {
            assert_eq!(f.check(&n(i)), Verdict::Maybe, "{i}: a known number hidden");
        }
        for i in 2_000_000..2_100_000 {
            assert_eq!(f.check(&n(i)), saved.check(&n(i)), "{i}: answers differ");
        }
        let refused = (2_000_000..2_100_000)
            .filter(|&i| f.check(&n(i)) == Verdict::Absent)
            .count();
        assert!(refused > 99_000, "{refused}");
    }

    #[test]
    fn every_layout_the_builder_makes_is_accepted() {
        for size in (0..300).chain([1_000, 4_096, 70_000]) {
            let (_, bytes) = saved(size, 0);
            let f = ExistenceFilter::new(10);
            f.restore(&bytes, |_| Ok(()))
                .unwrap_or_else(|e| panic!("size {size}: {e}"));
            assert!(
                (0..size).all(|i| f.check(&n(i)) == Verdict::Maybe),
                "size {size}"
            );
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let (_, bytes) = saved(50, 5);
        for len in 0..bytes.len() {
            refused(&bytes[..len]);
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (_, bytes) = saved(50, 5);
        for at in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[at] ^= mask;
                refused(&damaged);
            }
        }
    }

    #[test]
    fn another_version_or_hash_is_refused_even_with_a_valid_checksum() {
        let (_, bytes) = saved(50, 5);
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&2u32.to_le_bytes());
        reseal(&mut other);
        assert_eq!(refused(&other), SnapshotError::Version(2));
        let mut other = bytes.clone();
        other[12] ^= 1;
        reseal(&mut other);
        assert_eq!(refused(&other), SnapshotError::HashChanged);
        let mut other = bytes;
        other.extend_from_slice(&[0; 8]);
        reseal(&mut other);
        assert_eq!(
            refused(&other),
            SnapshotError::Inconsistent("trailing bytes")
        );
    }

    /// Crafted files whose checksum is right: a layout that would index past the fingerprints,
    /// and lengths larger than the file, are refused without a panic or a large allocation.
    #[test]
    fn crafted_layouts_and_lengths_are_refused() {
        let (_, bytes) = saved(1_000, 5);
        // Offsets: magic 8, version 4, probe 8, clean 1, position 8, written 8, numbers 8, seed 8.
        let sl_at = 8 + 4 + 8 + 1 + 8 + 8 + 8 + 8;
        let edits: [(usize, Vec<u8>); 6] = [
            (sl_at, 3u32.to_le_bytes().to_vec()),
            (sl_at, (1u32 << 30).to_le_bytes().to_vec()),
            (sl_at + 4, 0u32.to_le_bytes().to_vec()),
            (sl_at + 8, (u32::MAX - 7).to_le_bytes().to_vec()),
            (sl_at + 12, u64::MAX.to_le_bytes().to_vec()),
            (20, [2].to_vec()),
        ];
        for (at, value) in edits {
            let mut crafted = bytes.clone();
            crafted[at..at + value.len()].copy_from_slice(&value);
            reseal(&mut crafted);
            let e = refused(&crafted);
            assert!(
                matches!(e, SnapshotError::Inconsistent(_) | SnapshotError::Truncated),
                "edit at {at}: {e}"
            );
        }
        let mut recent_count = bytes.clone();
        let at = bytes.len() - CHECKSUM_LEN - 5 * 8 - 8;
        recent_count[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        reseal(&mut recent_count);
        assert_eq!(refused(&recent_count), SnapshotError::Truncated);
    }

    #[test]
    fn a_snapshot_the_caller_refuses_changes_nothing() {
        let (_, bytes) = saved(50, 5);
        let f = ExistenceFilter::new(1_000);
        let e = f.restore(&bytes, |meta| match meta.clean {
            true => Err("written before the last write".into()),
            false => Ok(()),
        });
        assert!(matches!(e, Err(SnapshotError::Stale(_))));
        assert!(!f.is_built());
    }

    #[test]
    fn an_inexact_filter_is_not_saved() {
        let f = ExistenceFilter::new(4);
        assert_eq!(f.snapshot(META), Err(SnapshotError::NotBuilt));
        f.begin_rebuild();
        f.finish_rebuild(&[n(1)]).unwrap();
        let many: Vec<[u8; 13]> = (100..200).map(n).collect();
        f.insert(many.iter().map(|x| &x[..]));
        assert_eq!(f.snapshot(META), Err(SnapshotError::NotBuilt), "overflowed");
    }
}
