//! SHA-256 digests, streaming file hashing, and hashing many files on all cores.
//!
//! Files are read in fixed-size chunks, so memory stays constant whatever the file size. Many files
//! are hashed by one worker per core pulling from a queue sorted largest first (longest-processing-time
//! scheduling), which keeps both cores busy to the end when one file is much larger than the rest.
//! `sha2` picks the SHA-NI instructions at run time where the CPU has them.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};

/// Chunk size for streaming reads: large enough that syscalls cost little next to hashing.
pub const CHUNK: usize = 256 * 1024;

/// A SHA-256 digest, written `sha256:<64 lowercase hex>` everywhere a person or a file sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex digits without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a digest: expected `sha256:` followed by 64 lowercase hex digits")]
pub struct DigestParseError(String);

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = || DigestParseError(s.chars().take(80).collect());
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Reports progress of long hashing or copying work. The library calls it; the binary draws it.
pub trait Progress: Sync {
    /// Work of `total_bytes` begins.
    fn start(&self, _label: &str, _total_bytes: u64) {}
    /// `bytes` more were processed.
    fn advance(&self, _bytes: u64) {}
    /// The work is done.
    fn finish(&self) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Hash everything `reader` yields, optionally copying it to `sink`; returns the digest and length.
pub fn hash_stream(
    mut reader: impl Read,
    mut sink: Option<&mut dyn Write>,
    progress: &dyn Progress,
) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        if let Some(sink) = sink.as_deref_mut() {
            sink.write_all(&buffer[..n])?;
        }
        total += n as u64;
        progress.advance(n as u64);
    }
    Ok((Digest(hasher.finalize().into()), total))
}

/// Files at least this large are read on a second thread while the first hashes, so that the
/// kernel's copy into user space overlaps with hashing instead of adding to it.
pub const PIPELINE_THRESHOLD: u64 = 8 * 1024 * 1024;

/// Hash a file, streaming (read-ahead on a second thread for large files).
pub fn hash_file(path: &Path, progress: &dyn Progress) -> Result<(Digest, u64)> {
    hash_file_with(path, progress, true)
}

/// Whether a read-ahead thread pays off for a file of `size` bytes among files of `total` bytes
/// hashed at once on every core: only when cores would otherwise sit idle, that is when the file is
/// more than an even share of the work — the other cores finish the rest and wait while it is
/// hashed. Decided by bytes, not by the number of files: one 1 GiB model beside four small configs
/// is the shape where read-ahead matters most; nine equal models keep every core busy without it.
pub fn read_ahead_helps(size: u64, total: u64) -> bool {
    let cores = cores() as u128;
    cores > 1 && u128::from(size) * cores > u128::from(total)
}

/// The cores this process may use, found once: `available_parallelism` reads the cgroup's CPU quota
/// from /sys and /proc on every call (about 80 µs here), which a per-file decision cannot afford.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Hash a file, streaming; `read_ahead` allows a second thread for large files.
pub fn hash_file_with(path: &Path, progress: &dyn Progress, read_ahead: bool) -> Result<(Digest, u64)> {
    let file = File::open(path).at(path, "opening")?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if read_ahead && size >= PIPELINE_THRESHOLD {
        return hash_pipelined(file, progress).at(path, "reading");
    }
    hash_stream(file, None, progress).at(path, "reading")
}

/// Hash with one thread reading ahead while this one hashes (the copy below, into nowhere).
fn hash_pipelined(reader: impl Read + Send, progress: &dyn Progress) -> io::Result<(Digest, u64)> {
    copy_hash_pipelined(reader, io::sink(), progress)
}

/// Copy the file `input` into the empty file `output` in the kernel (`copy_file_range`: no copy
/// through user space, a reflink where the filesystem can) while a second thread hashes what has
/// landed in `output`, chunk by chunk, behind the copy; the writeback of each copied chunk is started
/// at once, so the caller's fsync has little left to wait for. The digest is of the
/// **destination's** bytes — what will be served — so a corrupt source, a bad copy or a short write
/// all show as a mismatch. `Ok(None)` when the kernel cannot copy between these files (another
/// filesystem type, an old kernel): the caller falls back to [`copy_hash_pipelined`].
pub fn copy_file_then_hash(input: &File, output: &File, progress: &dyn Progress) -> io::Result<Option<Digest>> {
    const CHUNK: u64 = 8 * 1024 * 1024;
    let length = input.metadata()?.len();
    // Copy one chunk at `offset`; `Ok(None)` when the kernel cannot copy these files at all.
    let copy_chunk = |offset: u64| -> io::Result<Option<u64>> {
        let want = (length - offset).min(CHUNK) as usize;
        let (mut off_in, mut off_out) = (offset, offset);
        match rustix::fs::copy_file_range(input, Some(&mut off_in), output, Some(&mut off_out), want) {
            Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the source ended early")),
            Ok(n) => Ok(Some(n as u64)),
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::OPNOTSUPP,
            ) if offset == 0 => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    if length <= CHUNK {
        // A small file: copy, then hash, on this thread (a thread costs more than the file).
        let mut offset = 0;
        while offset < length {
            match copy_chunk(offset)? {
                Some(n) => offset += n,
                None => return Ok(None),
            }
        }
        return hash_copy(output, length, length, progress, |_| None).map(Some);
    }
    // The copier reports how far the destination is complete; the channel closes when it stops.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    std::thread::scope(|scope| {
        let copier = scope.spawn(move || -> io::Result<bool> {
            let mut offset = 0u64;
            while offset < length {
                let Some(n) = copy_chunk(offset)? else { return Ok(false) };
                crate::infra::atomic::start_writeback(output, offset, n);
                offset += n;
                let _ = done_tx.send(offset);
            }
            Ok(true)
        });
        let hashed = hash_copy(output, length, 0, progress, |_| done_rx.recv().ok());
        let complete = copier.join().map_err(|_| io::Error::other("the copying thread panicked"))??;
        if !complete {
            return Ok(None);
        }
        hashed.map(Some)
    })
}

/// Hash the `length` bytes of `output` as they become ready: `ready` bytes are at first, and
/// `more(ready)` waits for the next mark (`None`: nothing more will come).
fn hash_copy(
    output: &File,
    length: u64,
    mut ready: u64,
    progress: &dyn Progress,
    mut more: impl FnMut(u64) -> Option<u64>,
) -> io::Result<Digest> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; (length.min(1024 * 1024) as usize).max(1)];
    let mut hashed = 0u64;
    while hashed < length {
        if ready <= hashed {
            match more(ready) {
                Some(offset) => ready = offset,
                None => break, // the copier stopped: its result says why
            }
            continue;
        }
        let want = ((ready - hashed) as usize).min(buffer.len());
        let n = output.read_at(&mut buffer[..want], hashed)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the copy is shorter than it said"));
        }
        hasher.update(&buffer[..n]);
        hashed += n as u64;
        progress.advance(n as u64);
    }
    if hashed != length || output.metadata()?.len() != length {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the copy has a different length"));
    }
    Ok(Digest(hasher.finalize().into()))
}

/// Copy `reader` to `writer` while hashing, on three threads — reading, hashing, writing — so that
/// a large copy costs about as much as the slowest of the three, not their sum.
pub fn copy_hash_pipelined(
    mut reader: impl Read + Send,
    mut writer: impl Write + Send,
    progress: &dyn Progress,
) -> io::Result<(Digest, u64)> {
    const BUFFERS: usize = 4;
    const PIPE_CHUNK: usize = 1024 * 1024;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(BUFFERS);
    let (hashed_tx, hashed_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        let _ = empty_tx.send(vec![0u8; PIPE_CHUNK]);
    }
    // Only the writer recycles buffers: if it stops (a write error), the reader runs out of
    // buffers, its channel closes, and everyone else stops too — no thread waits forever.
    let recycle = empty_tx;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Ok(mut buffer) = empty_rx.recv() {
                let result = loop {
                    match reader.read(&mut buffer) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let done = !matches!(result, Ok(n) if n > 0);
                if full_tx.send(result.map(|n| (buffer, n))).is_err() || done {
                    break;
                }
            }
        });
        let writer_thread = scope.spawn(move || -> io::Result<()> {
            while let Ok((buffer, n)) = hashed_rx.recv() {
                writer.write_all(&buffer[..n])?;
                let _ = recycle.send(buffer);
            }
            writer.flush()
        });
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut read_error = None;
        while let Ok(message) = full_rx.recv() {
            match message {
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
                Ok((_, 0)) => break,
                Ok((buffer, n)) => {
                    hasher.update(&buffer[..n]);
                    total += n as u64;
                    progress.advance(n as u64);
                    if hashed_tx.send((buffer, n)).is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
            }
        }
        drop(hashed_tx);
        drop(full_rx);
        let written = writer_thread.join().unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
        if let Some(e) = read_error {
            return Err(e);
        }
        written?;
        Ok((Digest(hasher.finalize().into()), total))
    })
}

/// Hash many files on all cores. Results come back in the order of `paths`; the first error (in
/// that order) is returned.
pub fn hash_files(paths: &[(PathBuf, u64)], progress: &dyn Progress) -> Result<Vec<(Digest, u64)>> {
    let total = paths.iter().map(|(_, size)| size).sum();
    let results = parallel_map(paths, |(path, size)| hash_file_with(path, progress, read_ahead_helps(*size, total)));
    results.into_iter().collect()
}

/// Run `work` over `items` on one worker per core, largest item first (by the `u64` weight beside
/// each item), returning results in the items' order.
pub fn parallel_map<T: Sync, R: Send>(items: &[(T, u64)], work: impl Fn(&(T, u64)) -> R + Sync) -> Vec<R> {
    if items.iter().all(|(_, weight)| *weight == 0) {
        // Nothing to read (hard links already proven, empty files): threads would cost more.
        return items.iter().map(work).collect();
    }
    let workers = cores().min(items.len().max(1));
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[b].1.cmp(&items[a].1));
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = order.get(i) else { break };
                    let result = work(&items[index]);
                    if let Ok(mut slot) = slots[index].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten().unwrap_or_else(|| unreachable_worker_panicked()))
        .collect()
}

fn unreachable_worker_panicked() -> ! {
    // A worker only leaves a slot empty if it panicked, and `thread::scope` re-raises that panic
    // before we get here.
    panic!("hash worker finished without a result")
}

/// Check that `path` hashes to `expected`; `Err(Check)` naming the file otherwise.
pub fn verify_file(path: &Path, expected: &Digest, progress: &dyn Progress, read_ahead: bool) -> Result<u64> {
    let (actual, size) = hash_file_with(path, progress, read_ahead)?;
    if &actual != expected {
        return Err(Error::Check(format!(
            "{}: content hash {actual} does not match the expected {expected}",
            path.display()
        )));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_is_decided_by_bytes_not_by_the_number_of_files() {
        let cores = cores();
        let (gib, config) = (1u64 << 30, 4096u64);
        if cores < 2 {
            assert!(!read_ahead_helps(gib, gib), "one core: nothing to overlap with");
            return;
        }
        // The realistic workspace: one model beside four configs. The model is the work that remains.
        assert!(read_ahead_helps(gib, gib + 4 * config));
        assert!(!read_ahead_helps(config, gib + 4 * config));
        // Nine equal models keep every core (up to nine) busy without extra threads.
        if cores < 9 {
            assert!(!read_ahead_helps(gib, 9 * gib));
        }
    }

    #[test]
    fn kernel_copy_hashes_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        // Several chunks and a ragged end.
        let data: Vec<u8> = (0..(17 * 1024 * 1024 + 123)).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&source, &data).unwrap();
        let input = File::open(&source).unwrap();
        let target = dir.path().join("target");
        let output =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&target).unwrap();
        let digest = copy_file_then_hash(&input, &output, &NoProgress).unwrap().expect("same filesystem");
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(std::fs::read(&target).unwrap(), data);
        // An empty file.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let output = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("e2"))
            .unwrap();
        assert_eq!(
            copy_file_then_hash(&File::open(&empty).unwrap(), &output, &NoProgress).unwrap(),
            Some(Digest::of(b""))
        );
    }

    // FIPS 180-2 test vectors.
    #[test]
    fn known_vectors() {
        assert_eq!(Digest::of(b"").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(Digest::of(b"abc").hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn streaming_equals_one_shot_across_chunk_boundaries() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i * 31 % 251) as u8).collect();
        let (digest, len) = hash_stream(&data[..], None, &NoProgress).unwrap();
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(len, data.len() as u64);
    }

    #[test]
    fn pipelined_hash_equals_one_shot() {
        for len in [0, 1, 1024 * 1024 - 1, 1024 * 1024, 3 * 1024 * 1024 + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            let (digest, n) = hash_pipelined(&data[..], &NoProgress).unwrap();
            assert_eq!((digest, n), (Digest::of(&data), len as u64), "{len}");
        }
    }

    #[test]
    fn pipelined_copy_writes_identical_bytes() {
        for len in [0, 5, 1024 * 1024, 3 * 1024 * 1024 + 11] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 % 241) as u8).collect();
            let mut out = Vec::new();
            let (digest, n) = copy_hash_pipelined(&data[..], &mut out, &NoProgress).unwrap();
            assert_eq!((digest, n), (Digest::of(&data), len as u64));
            assert_eq!(out, data);
        }
    }

    #[test]
    fn pipelined_copy_reports_write_errors() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = vec![7u8; 5 * 1024 * 1024];
        let err = copy_hash_pipelined(&data[..], Full, &NoProgress).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn pipelined_hash_reports_read_errors() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buffer[0] = 1;
                Ok(1)
            }
        }
        let err = hash_pipelined(Failing(3), &NoProgress).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn copy_while_hashing_writes_identical_bytes() {
        let data = b"hello world".repeat(1000);
        let mut out = Vec::new();
        let (digest, _) = hash_stream(&data[..], Some(&mut out), &NoProgress).unwrap();
        assert_eq!(out, data);
        assert_eq!(digest, Digest::of(&data));
    }

    #[test]
    fn digest_text_round_trip_and_rejections() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        for bad in ["", "sha256:", "sha1:abc", &d.to_string().to_uppercase(), &format!("{d}0"), &d.hex()] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<(u32, u64)> = (0..50).map(|i| (i, (i % 7) as u64)).collect();
        let out = parallel_map(&items, |(i, _)| i * 2);
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    }
}
