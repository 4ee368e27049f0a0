//! Reading files a user names, which may be anything: a device that never
//! ends (`/dev/zero`), a pipe from a download, a FIFO. A regular file's
//! size is known before reading, the others' only by reading; so every
//! read stops one byte past its limit.

use std::io::Read;
use std::path::Path;

/// The bytes of `path`, or an `InvalidData` error if it holds more than
/// `limit` bytes; never more than `limit + 1` bytes are read.
pub fn read_at_most(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let known = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    if let Some(size) = known.filter(|size| *size > limit) {
        return Err(too_big(Some(size), limit));
    }
    // One past the limit tells a file of exactly the limit from a longer
    // one. Of unknown size (a pipe, a device), the buffer grows by doubling
    // but never past that, so a read to the limit holds at most about one
    // and a half times it while the buffer moves, not three.
    let most = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(known.unwrap_or(0).min(limit) as usize);
    let mut reader = file.take(limit.saturating_add(1));
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if bytes.capacity() - bytes.len() < n {
            let grown = bytes.capacity().saturating_mul(2).max(bytes.len() + n);
            bytes.reserve_exact(grown.min(most).max(bytes.len() + n) - bytes.len());
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    if bytes.len() as u64 > limit {
        return Err(too_big(None, limit));
    }
    Ok(bytes)
}

/// [`read_at_most`] of a UTF-8 text.
pub fn read_text_at_most(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_at_most(path, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_big(size: Option<u64>, limit: u64) -> std::io::Error {
    let message = match size {
        Some(size) => format!("it is {size} bytes; the limit is {limit}"),
        None => format!("it is more than {limit} bytes, the limit"),
    };
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_past_the_limit_whatever_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_at_most(&file, 5).unwrap(), b"12345");
        let e = read_at_most(&file, 4).unwrap_err();
        assert_eq!(e.to_string(), "it is 5 bytes; the limit is 4");
        // A device without end is cut at the limit, not read to exhaustion.
        let e = read_at_most(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "it is more than 1048576 bytes, the limit");
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(read_text_at_most(&file, 10).is_err());
        assert_eq!(
            read_at_most(&dir.path().join("none"), 1)
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::NotFound
        );
    }

    /// From a pipe, whose size is unknown, the bytes come whole up to the
    /// limit, in a buffer that never grew past it.
    #[test]
    fn a_pipe_is_read_to_its_end_in_a_buffer_bounded_by_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let limit = 300_000u64;
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..limit).map(|i| (i % 251) as u8).collect();
                std::fs::write(fifo, &data).unwrap();
                data
            })
        };
        let read = read_at_most(&fifo, limit).unwrap();
        assert_eq!(read, writer.join().unwrap());
        assert!(read.capacity() as u64 <= limit + 1, "{}", read.capacity());
    }
}
