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
