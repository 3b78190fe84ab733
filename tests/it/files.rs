//! Static files from a route's `root`: types, validators, ranges, the cache, and containment.

use crate::common;

use common::*;
use http::{Method, StatusCode};
use std::time::Duration;

struct Site {
    dir: std::path::PathBuf,
    outside: crate::common::Scratch,
    _base: crate::common::Scratch,
}

fn site(tag: &str) -> Site {
    let base = crate::common::Scratch::new(&format!("files-{tag}"));
    let dir = base.join("www");
    let outside = crate::common::Scratch::new(&format!("secret-{tag}"));
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.join("style.css"), "body{}").unwrap();
    std::fs::write(dir.join("data.json"), "{\"a\":1}").unwrap();
    std::fs::write(dir.join("docs/notes.txt"), "0123456789").unwrap();
    std::fs::write(dir.join("big.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), dir.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("linkdir")).unwrap();
    Site {
        dir,
        outside,
        _base: base,
    }
}

async fn serve(s: &Site, cache: bool) -> langur::Langur {
    langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\nroot = '{}'\ncache = {cache}\n[cache]\nmax_object_size = 100000\n",
        s.dir.display()
    ))
    .await
}

#[tokio::test]
async fn content_types_validators_and_index() {
    let s = site("types");
    let l = serve(&s, true).await;
    let a = l.listen_addrs()[0];
    for (path, ty, body) in [
        ("/", "text/html", "<h1>home</h1>"),
        ("/style.css", "text/css", "body{}"),
        ("/data.json", "application/json", "{\"a\":1}"),
        ("/docs/notes.txt", "text/plain", "0123456789"),
    ] {
        let r = get(a, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], ty, "{path}");
        assert_eq!(r.text(), body);
        assert!(r.headers.contains_key("etag") && r.headers.contains_key("last-modified"));
    }
    let r = get(a, "/docs/notes.txt").await;
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let lm = r.headers["last-modified"].to_str().unwrap().to_string();
    let nm = request(
        a,
        Method::GET,
        "/docs/notes.txt",
        &[("if-none-match", &etag)],
        body(""),
    )
    .await;
    assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
    let nm = request(
        a,
        Method::GET,
        "/docs/notes.txt",
        &[("if-modified-since", &lm)],
        body(""),
    )
    .await;
    assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
    let head = request(a, Method::HEAD, "/docs/notes.txt", &[], body("")).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], "10");
    assert!(head.body.is_empty());
    let post = request(a, Method::POST, "/docs/notes.txt", &[], body("x")).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn ranges_from_memory_and_from_disk() {
    let s = site("range");
    let l = serve(&s, true).await;
    let a = l.listen_addrs()[0];
    let r = request(
        a,
        Method::GET,
        "/docs/notes.txt",
        &[("range", "bytes=2-5")],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.text(), "2345");
    assert_eq!(r.headers["content-range"], "bytes 2-5/10");
    let r = request(
        a,
        Method::GET,
        "/docs/notes.txt",
        &[("range", "bytes=-3")],
        body(""),
    )
    .await;
    assert_eq!(r.text(), "789");
    let r = request(
        a,
        Method::GET,
        "/docs/notes.txt",
        &[("range", "bytes=20-")],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers["content-range"], "bytes */10");
    // Larger than max_object_size: streamed from disk, ranges still work.
    let r = get(a, "/big.bin").await;
    assert_eq!(r.body.len(), 300_000);
    let r = request(
        a,
        Method::GET,
        "/big.bin",
        &[("range", "bytes=299990-")],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body.len(), 10);
    assert_eq!(r.headers["content-range"], "bytes 299990-299999/300000");
}

#[tokio::test]
async fn a_hot_file_is_read_once_and_a_changed_one_again() {
    let s = site("hot");
    let l = serve(&s, true).await;
    let a = l.listen_addrs()[0];
    let first = get(a, "/style.css").await;
    assert!(first.headers["cache-status"]
        .to_str()
        .unwrap()
        .contains("stored"));
    for _ in 0..5 {
        let r = get(a, "/style.css").await;
        assert_eq!(r.headers["cache-status"], "langur; hit");
        // Checked against the file on every request: as old as the file, no `Age`.
        assert!(!r.headers.contains_key("age"));
    }
    let stats = l.shared().runtime.load().cache.stats();
    assert_eq!((stats.hits, stats.misses), (5, 1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(s.dir.join("style.css"), "body{color:red}").unwrap();
    let r = get(a, "/style.css").await;
    assert_eq!(r.text(), "body{color:red}");
}

#[tokio::test]
async fn traversal_attempts_are_404_and_never_read() {
    let s = site("trav");
    let l = serve(&s, false).await;
    let a = l.listen_addrs()[0];
    for path in [
        "/../langur-secret/secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2Fetc%2Fpasswd",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/..%2f..%2fetc/passwd",
        "/link.txt",
        "/linkdir/secret.txt",
        "/docs%00.txt",
        "/docs/..%5c..%5csecret.txt",
        "/nope.txt",
    ] {
        let raw_req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = raw(a, raw_req.as_bytes(), Duration::from_secs(2)).await;
        let status = resp.lines().next().unwrap_or("");
        assert!(
            status.contains(" 404 ") || status.contains(" 400 "),
            "{path}: {status}"
        );
        assert!(!resp.contains("secret"), "{path} leaked the file");
        assert!(!resp.contains("root:"), "{path} leaked /etc/passwd");
    }
}

#[tokio::test]
async fn symlinks_are_followed_inside_the_root_and_never_out_of_it() {
    use std::os::unix::fs::symlink;
    let s = site("links");
    let d = &s.dir;
    symlink("style.css", d.join("alias.css")).unwrap();
    symlink(d.join("style.css"), d.join("absolute.css")).unwrap();
    symlink("docs", d.join("docsalias")).unwrap();
    symlink(d.join("docs"), d.join("docsabsolute")).unwrap();
    let out = s.outside.file_name().unwrap().to_str().unwrap();
    symlink(format!("../../{out}/secret.txt"), d.join("up.txt")).unwrap();
    symlink(format!("docs/../../../{out}"), d.join("updir")).unwrap();
    // A precompressed sibling that leads out of the root is not sent.
    std::fs::write(s.outside.join("secret.gz"), "secret").unwrap();
    symlink(s.outside.join("secret.gz"), d.join("style.css.gz")).unwrap();
    nix::unistd::mkfifo(&d.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\nroot = '{}'\nprecompressed = true\n",
        d.display()
    ))
    .await;
    let a = l.listen_addrs()[0];
    for (path, text) in [
        ("/alias.css", "body{}"),
        ("/absolute.css", "body{}"),
        ("/docsalias/notes.txt", "0123456789"),
        ("/docsabsolute/notes.txt", "0123456789"),
    ] {
        let r = get(a, path).await;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, text),
            "{path}"
        );
    }
    let gz = [("accept-encoding", "gzip")];
    let r = request(a, Method::GET, "/style.css", &gz, body("")).await;
    assert_eq!(r.text(), "body{}");
    assert!(!r.headers.contains_key("content-encoding"));
    for path in [
        "/up.txt",
        "/updir/secret.txt",
        "/link.txt",
        "/linkdir/secret.txt",
    ] {
        let r = get(a, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("secret"), "{path} leaked the file");
    }
    // A FIFO is neither waited on nor served.
    let r = tokio::time::timeout(Duration::from_secs(2), get(a, "/pipe")).await;
    assert_eq!(r.expect("a FIFO must not block").status, 404);
}

/// Requests `path` until it answers `want`, for up to 3 s (the root is reopened every second).
async fn until_served(a: std::net::SocketAddr, path: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = get(a, path).await;
        if r.text() == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {}", r.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_replaced_root_is_served_without_a_reload() {
    let s = site("deploy");
    let releases = s.dir.join("releases");
    for (n, text) in [("1", "one"), ("2", "two")] {
        std::fs::create_dir_all(releases.join(n)).unwrap();
        std::fs::write(releases.join(n).join("a.txt"), text).unwrap();
    }
    let current = s.dir.join("current");
    std::os::unix::fs::symlink(releases.join("1"), &current).unwrap();
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\nroot = '{}'\n",
        current.display()
    ))
    .await;
    let a = l.listen_addrs()[0];
    assert_eq!(get(a, "/a.txt").await.text(), "one");
    // A release deployed by moving the symlink.
    std::os::unix::fs::symlink(releases.join("2"), s.dir.join("next")).unwrap();
    std::fs::rename(s.dir.join("next"), &current).unwrap();
    until_served(a, "/a.txt", "two").await;
    // The directory removed and made again.
    std::fs::remove_dir_all(releases.join("2")).unwrap();
    std::fs::create_dir(releases.join("2")).unwrap();
    std::fs::write(releases.join("2").join("a.txt"), "three").unwrap();
    until_served(a, "/a.txt", "three").await;
}

#[tokio::test]
async fn a_kept_file_replaced_by_one_of_the_same_size_and_time_is_read_again() {
    let s = site("inode");
    let l = serve(&s, true).await;
    let a = l.listen_addrs()[0];
    let css = s.dir.join("style.css");
    assert_eq!(get(a, "/style.css").await.text(), "body{}");
    assert_eq!(
        get(a, "/style.css").await.headers["cache-status"],
        "langur; hit"
    );
    // A new release copied with its times kept: same size, same mtime, other bytes.
    let mtime = std::fs::metadata(&css).unwrap().modified().unwrap();
    let new = s.dir.join("style.css.new");
    std::fs::write(&new, "body{}".replace('{', "[")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&new)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&new, &css).unwrap();
    assert_eq!(get(a, "/style.css").await.text(), "body[}");
    assert_eq!(
        get(a, "/style.css").await.headers["cache-status"],
        "langur; hit"
    );
    // Rewritten in place (the same inode), its time set back: `cp -p`, `rsync --inplace`.
    let mtime = std::fs::metadata(&css).unwrap().modified().unwrap();
    std::fs::write(&css, "body]}").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&css)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(get(a, "/style.css").await.text(), "body]}");
}

/// A pre-compressed sibling kept for its file, and the same `.gz` asked for by its own name,
/// are two entries: each keeps its own type and coding, in either order.
#[tokio::test]
async fn a_kept_sibling_and_the_same_file_by_name_never_share_an_entry() {
    let s = site("sibling");
    std::fs::write(s.dir.join("style.css.gz"), "gzip bytes of style").unwrap();
    std::fs::write(s.dir.join("data.json.gz"), "gzip bytes of data").unwrap();
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\nroot = '{}'\nprecompressed = true\ncache = true\n",
        s.dir.display()
    ))
    .await;
    let a = l.listen_addrs()[0];
    let gz = [("accept-encoding", "gzip")];
    let check_sibling = |r: &Resp, body: &str| {
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert!(r.headers["content-type"].to_str().unwrap() != "application/gzip");
        assert_eq!(r.text(), body);
    };
    let check_direct = |r: &Resp, body: &str| {
        assert!(
            !r.headers.contains_key("content-encoding"),
            "{:?}",
            r.headers
        );
        assert_eq!(r.headers["content-type"], "application/gzip");
        assert_eq!(r.text(), body);
    };
    // The sibling first, then the file by its name, each twice (a miss, then a hit).
    for _ in 0..2 {
        let r = request(a, Method::GET, "/style.css", &gz, body("")).await;
        check_sibling(&r, "gzip bytes of style");
    }
    for _ in 0..2 {
        check_direct(&get(a, "/style.css.gz").await, "gzip bytes of style");
    }
    // The other order.
    for _ in 0..2 {
        check_direct(&get(a, "/data.json.gz").await, "gzip bytes of data");
    }
    for _ in 0..2 {
        let r = request(a, Method::GET, "/data.json", &gz, body("")).await;
        check_sibling(&r, "gzip bytes of data");
    }
    let r = request(a, Method::GET, "/data.json", &gz, body("")).await;
    assert_eq!(r.headers["cache-status"], "langur; hit");
}

#[tokio::test]
async fn legacy_document_root() {
    let s = site("legacy");
    let l = langur_legacy(&format!(
        "[PROXY_ENTRY]\n  DocumentRoot {}\n  Match ^/\n  Cache On\n",
        s.dir.display()
    ))
    .await;
    let a = l.listen_addrs()[0];
    assert_eq!(get(a, "/docs/notes.txt").await.text(), "0123456789");
}

/// This process's resident memory in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn slow_clients_of_a_large_file_cost_a_chunk_each_not_the_file() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = site("slow");
    std::fs::write(s.dir.join("large.bin"), vec![3u8; 8_000_000]).unwrap();
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\nroot = '{}'\n",
        s.dir.display()
    ))
    .await;
    let at = l.listen_addrs()[0];
    let before = rss();
    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
        c.write_all(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Read the head and a little, then nothing more.
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss().saturating_sub(before);
    // The whole file per client would be 320 MB.
    assert!(
        grown < 40 << 20,
        "40 stalled clients grew the process by {} MiB",
        grown >> 20
    );
    drop(clients);
}

#[tokio::test]
async fn directories_redirect_files_are_not_directories_and_preconditions_hold() {
    let s = site("dirs");
    std::fs::write(s.dir.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    for cache in [false, true] {
        let l = serve(&s, cache).await;
        let a = l.listen_addrs()[0];
        // A file asked for as a directory is not found.
        for p in ["/style.css/", "/style.css/.", "/docs/notes.txt/"] {
            assert_eq!(get(a, p).await.status, 404, "{p} (cache {cache})");
        }
        // A directory without its slash is redirected to it, the query kept.
        let r = get(a, "/docs?x=1").await;
        assert_eq!(r.status, 301);
        assert_eq!(r.headers["location"], "/docs/?x=1");
        assert_eq!(get(a, "/docs/").await.text(), "<h1>docs</h1>");
        // If-Match and If-Unmodified-Since (RFC 9110 13.2.2).
        let r = get(a, "/style.css").await;
        let etag = r.headers["etag"].to_str().unwrap().to_string();
        let lm = r.headers["last-modified"].to_str().unwrap().to_string();
        for (name, value, want) in [
            ("if-match", "\"old\"", 412),
            ("if-match", etag.as_str(), 200),
            ("if-match", "*", 200),
            ("if-unmodified-since", "Mon, 01 Jan 2024 00:00:00 GMT", 412),
            ("if-unmodified-since", lm.as_str(), 200),
        ] {
            let r = request(a, Method::GET, "/style.css", &[(name, value)], body("")).await;
            assert_eq!(r.status.as_u16(), want, "{name}: {value} (cache {cache})");
        }
    }
}
