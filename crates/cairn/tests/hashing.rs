//! The parallel, cached hashing path must give exactly the digests of a plain single-threaded
//! reference that follows spec/lockfile.md word for word, on the awkward sizes: empty files,
//! BLAKE3's 16 KiB mmap threshold, cairn's own buffer/mmap threshold, and a file over 4 GiB
//! (sparse, so the test stays cheap on disk).

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cairn::content::digest::{self, HashOptions, MMAP_MIN};

/// The reference: walk, sort whole paths by bytes, stream each file through one hasher, build
/// the b3sum lines, hash them.
fn reference_dir_digest(root: &Path) -> String {
    let mut files: Vec<Vec<u8>> = walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        })
        .collect();
    files.sort();
    let mut manifest = Vec::new();
    for rel in files {
        let path = root.join(std::ffi::OsStr::from_bytes(&rel));
        let hex = reference_file_hex(&path);
        let name = String::from_utf8_lossy(&rel).into_owned();
        let escaped = name.contains(['\\', '\n', '\r']);
        if escaped {
            manifest.push(b'\\');
        }
        manifest.extend_from_slice(hex.as_bytes());
        manifest.extend_from_slice(b"  ");
        let shown = name
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        manifest.extend_from_slice(shown.as_bytes());
        manifest.push(b'\n');
    }
    format!("blake3:{}", blake3::hash(&manifest).to_hex())
}

fn reference_file_hex(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().to_hex().to_string()
}

fn write(root: &Path, rel: &str, len: usize, seed: u8) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(p, data).unwrap();
}

#[test]
fn parallel_and_cached_digests_equal_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let mmap = MMAP_MIN as usize;
    let sizes = [
        0,
        1,
        1023,
        1024,
        16 * 1024 - 1,
        16 * 1024,
        16 * 1024 + 1,
        64 * 1024,
        mmap - 1,
        mmap,
        mmap + 1,
    ];
    for (i, len) in sizes.iter().enumerate() {
        write(&root, &format!("sizes/{len}.bin"), *len, i as u8);
        write(&root, &format!("deep/{i}/x/{len}"), *len, 7);
    }
    for i in 0..500 {
        write(&root, &format!("many/{i:04}"), i % 300, i as u8);
    }
    write(&root, "odd\\name", 3, 1);
    write(&root, "new\nline", 3, 2);
    std::fs::write(root.join("empty"), b"").unwrap();

    let want = reference_dir_digest(&root);
    let plain = digest::hash_path(&root).unwrap();
    assert_eq!(plain.digest.to_string(), want);

    // With a cache: first pass fills it, second reads nothing and must agree.
    let cache = dir.path().join("cache");
    let opts = HashOptions {
        cache_dir: Some(&cache),
        use_cache: true,
        progress: None,
        confine: None,
    };
    let first = digest::hash_path_with(&root, &opts).unwrap();
    assert_eq!(first.digest.to_string(), want);
    cairn::content::cache::settle(&root).unwrap();
    let _settle = digest::hash_path_with(&root, &opts).unwrap();
    let cached = digest::hash_path_with(&root, &opts).unwrap();
    assert_eq!(cached.digest.to_string(), want);
    assert_eq!(cached.files_read, 0);
    assert_eq!(cached.files, plain.files);
    assert_eq!(cached.bytes, plain.bytes);

    // Single files agree with the reference too.
    for len in sizes {
        let p = root.join(format!("sizes/{len}.bin"));
        let (d, n) = digest::hash_file(&p).unwrap();
        assert_eq!(d.hex(), reference_file_hex(&p), "{len}");
        assert_eq!(n, len as u64);
    }
}

#[test]
fn file_over_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big/sparse.bin");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let len = (4u64 << 30) + 4097;
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    // Some real bytes past the 4 GiB mark, so 32-bit truncation anywhere would show.
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"past four gibibytes", (4u64 << 30) + 10)
        .unwrap();
    drop(f);
    let (d, n) = digest::hash_file(&path).unwrap();
    assert_eq!(n, len);
    assert_eq!(d.hex(), reference_file_hex(&path));
    // As a directory: one manifest line, from the reference hex computed above.
    let h = digest::hash_path(&dir.path().join("big")).unwrap();
    let line = format!("{}  sparse.bin\n", d.hex());
    assert_eq!(
        h.digest.to_string(),
        format!("blake3:{}", blake3::hash(line.as_bytes()).to_hex())
    );
    assert_eq!(h.bytes, len);
}
