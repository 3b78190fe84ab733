//! Replays the committed fuzzing seed corpus (fuzz/corpus) through the same entry points as the
//! fuzz targets, on the stable toolchain, so every input that ever mattered keeps passing.

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "no seeds for {target}");
    out.sort();
    out
}

#[test]
fn config_readers_never_panic_and_name_the_file() {
    for (target, toml) in [("legacy_config", false), ("toml_config", true)] {
        for input in inputs(target) {
            let text = String::from_utf8_lossy(&input);
            if let Err(e) = langur::config::parse_str("seed", &text, toml) {
                assert!(e.to_string().contains("seed"), "{e}");
            }
        }
    }
}

#[test]
fn router_seeds_route_like_the_regex_crate() {
    for input in inputs("router") {
        let text = String::from_utf8_lossy(&input);
        let mut lines: Vec<&str> = text.split('\n').collect();
        let path = lines.pop().unwrap();
        let routes: Vec<(Vec<String>, usize)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (l.split('\t').map(str::to_string).collect(), i))
            .collect();
        let router = langur::router::Router::new(&routes).unwrap();
        let want = routes.iter().find_map(|(pats, i)| {
            pats.iter()
                .any(|p| regex::Regex::new(p).unwrap().is_match(path))
                .then_some(*i)
        });
        assert_eq!(router.route(path).map(|(_, t)| t), want, "{text:?}");
    }
}

#[test]
fn request_head_seeds_scan_the_same_however_split() {
    for input in inputs("request_head") {
        let bytes = &input[1..];
        let mut whole = langur::framing::Framing::default();
        whole.scan(bytes);
        let mut bytewise = langur::framing::Framing::default();
        for b in bytes {
            bytewise.scan(std::slice::from_ref(b));
        }
        assert_eq!(whole.ambiguous(), bytewise.ambiguous(), "{input:?}");
    }
}

#[tokio::test]
async fn request_head_seeds_are_read_by_the_lane_as_hyper_reads_them() {
    let mut taken = 0;
    for input in inputs("request_head") {
        let bytes = &input[1..];
        taken += usize::from(langur::lane::fuzzing::agrees_with_hyper(bytes).await);
    }
    assert!(taken > 0, "some seeds are heads the lane takes");
}

#[tokio::test(start_paused = true)]
async fn upstream_response_seeds_keep_the_framing_rules() {
    let mut outcomes = Vec::new();
    for input in inputs("upstream_response") {
        let head = input[0] & 1 == 1;
        let k = usize::from(input[1]).min(input.len() - 2);
        let (pieces, response) = input[2..].split_at(k);
        let outcome = langur::upstream::h1::fuzzing::exchange(response, pieces, head).await;
        if let Ok(o) = &outcome {
            langur::upstream::h1::fuzzing::check(o, head);
        }
        outcomes.push((String::from_utf8_lossy(response).to_string(), outcome));
    }
    let find = |start: &str| {
        outcomes
            .iter()
            .find(|(r, _)| r.contains(start))
            .unwrap_or_else(|| panic!("no seed with {start:?}"))
    };
    // A few seeds, answered as the rules say.
    let (_, o) = find("5;ext=1");
    let o = o.as_ref().unwrap();
    assert_eq!(o.body.as_deref().unwrap(), b"hello world");
    assert!(o.trailers && o.reused);
    let (_, o) = find("until the end");
    let o = o.as_ref().unwrap();
    assert_eq!(o.body.as_deref().unwrap(), b"until the end");
    assert!(!o.reused, "a close-delimited body leaves nothing to reuse");
    let (_, o) = find("Content-Length: 3\r\nTransfer-Encoding");
    assert!(o.is_err(), "{o:?}");
    let (_, o) = find("Content-Length: 3\r\nContent-Length: 3");
    assert!(o.is_err(), "{o:?}");
    let (_, o) = find("Content-Length: 10\r\n\r\nabc");
    assert!(o.as_ref().unwrap().body.is_err());
    let (_, o) = find("okHTTP/1.1");
    let o = o.as_ref().unwrap();
    assert!(
        o.body.is_ok() && !o.reused,
        "stray bytes after a response: not reused"
    );
    let (_, o) = find("304 Not Modified");
    let o = o.as_ref().unwrap();
    // No body, and the connection is not reused: a server that sends one anyway must not have
    // it read as the next request's response.
    assert!(o.body.as_ref().unwrap().is_empty() && !o.reused);
}
