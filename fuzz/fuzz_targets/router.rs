//! The route matcher: patterns and a path from the input (one per line, the last line is the
//! path). Compiling may fail; matching never panics and agrees with the first pattern found in
//! the path by the regex crate alone.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let Some(path) = lines.pop() else { return };
    if lines.is_empty() || lines.len() > 16 {
        return;
    }
    let routes: Vec<(Vec<String>, usize)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.split('\t').map(str::to_string).collect(), i))
        .collect();
    // The oracle compiles patterns one by one; only inputs where each one is valid alone
    // are compared (an unbalanced pair could compile once joined).
    if routes.iter().flat_map(|(p, _)| p).any(|p| regex::Regex::new(p).is_err()) {
        return;
    }
    let Ok(router) = langur::router::Router::new(&routes) else {
        return;
    };
    let got = router.route(path).map(|(_, target)| target);
    let want = routes.iter().find_map(|(pats, i)| {
        pats.iter()
            .any(|p| regex::Regex::new(p).is_ok_and(|r| r.is_match(path)))
            .then_some(*i)
    });
    assert_eq!(got, want, "routes {routes:?} path {path:?}");
});
