//! The layer rule, checked by a test over the source: a top-level module imports only modules
//! on its own layer or below, and modules on one layer do not import each other in a cycle.
//! `docs/architecture.md` draws the same layers.

/// Top-level modules, from the top layer down. A module missing here fails the test, so a new
/// one must be placed on purpose.
pub(crate) const LAYERS: &[&[&str]] = &[
    // Start-up and commands.
    &["cli", "demo"],
    &["server"],
    // On top of the request path: reads the same snapshot.
    &["admin"],
    // A client connection: accept loop tasks, the lane, hyper's server, the parking lot, the
    // framing scanner, the connection timers.
    &["conn", "lane", "park", "framing", "timer"],
    // One request's phases.
    &["proxy", "router"],
    // Server state (and the certificates `[acme]` obtains, whose events join the health
    // log), and below it the pure picks and the connections to servers.
    &["backend", "acme"],
    &["balancer", "upstream"],
    &["cache", "stats", "limits"],
    // The fleet's shared state in Redis (`[cluster]`).
    &["cluster"],
    // What both sides of the proxy share: the client connection's state and request bodies,
    // HTTP message rules, error kinds, the access-log line.
    &["session", "strict", "error", "access_log"],
    &[
        "config",
        "credentials",
        "tls",
        "template",
        "matching",
        "client_identity",
    ],
    &["clock", "coding", "worker", "regular_file", "layers"],
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Module path of a source file under `src/` (`proxy/mod.rs` → `[proxy]`).
    fn module_of(rel: &Path) -> Vec<String> {
        let mut parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            parts.clear();
        }
        parts
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The top-level modules a file's code (not its unit tests) refers to.
    fn imports(module: &[String], text: &str) -> BTreeSet<String> {
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => text,
        };
        let code: String = code
            .lines()
            .map(|l| match l.find("//") {
                Some(i) => &l[..i],
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = BTreeSet::new();
        let path = regex::Regex::new(r"\b(crate|super)((?:::\w+)+)").unwrap();
        for c in path.captures_iter(&code) {
            let mut base: Vec<String> = if &c[1] == "crate" {
                Vec::new()
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let mut segs: Vec<&str> = c[2].trim_start_matches("::").split("::").collect();
            // `super::super::x`
            while &c[1] == "super" && segs.first() == Some(&"super") {
                base.pop();
                segs.remove(0);
            }
            if let Some(top) = base
                .first()
                .cloned()
                .or_else(|| segs.first().map(|s| s.to_string()))
            {
                out.insert(top);
            }
        }
        // `use crate::{a, b::c}`
        let group = regex::Regex::new(r"use\s+crate::\{([^}]*)\}").unwrap();
        for c in group.captures_iter(&code) {
            for part in c[1].split(',') {
                if let Some(first) = part.trim().split("::").next().filter(|s| !s.is_empty()) {
                    out.insert(first.to_string());
                }
            }
        }
        out
    }

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut list = Vec::new();
        files(&src, &mut list);
        let tops: BTreeSet<String> = list
            .iter()
            .filter_map(|p| module_of(p.strip_prefix(&src).unwrap()).first().cloned())
            .collect();
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in &list {
            let module = module_of(p.strip_prefix(&src).unwrap());
            // Unit tests (inline `mod tests` or a `tests.rs`) may reach anywhere.
            if module.last().is_some_and(|m| m == "tests") {
                continue;
            }
            let Some(top) = module.first() else { continue };
            let text = std::fs::read_to_string(p).unwrap();
            for to in imports(&module, &text) {
                if to != *top && tops.contains(&to) {
                    g.entry(top.clone()).or_default().insert(to);
                }
            }
        }
        g
    }

    fn layer(m: &str) -> usize {
        LAYERS
            .iter()
            .position(|l| l.contains(&m))
            .unwrap_or_else(|| panic!("module `{m}` is on no layer: add it to LAYERS"))
    }

    /// Every import points down, or sideways without a cycle.
    #[test]
    fn imports_point_down() {
        let g = graph();
        let mut up = Vec::new();
        for (from, tos) in &g {
            for to in tos {
                if layer(to) < layer(from) {
                    up.push(format!("{from} -> {to}"));
                }
            }
        }
        assert!(up.is_empty(), "imports that point up a layer: {up:?}");
        // No cycle among modules (sideways edges included).
        fn visit(
            n: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            state: &mut BTreeMap<String, u8>,
            stack: &mut Vec<String>,
        ) {
            match state.get(n) {
                Some(2) => return,
                Some(1) => panic!("import cycle: {} -> {n}", stack.join(" -> ")),
                _ => {}
            }
            state.insert(n.to_string(), 1);
            stack.push(n.to_string());
            for m in g.get(n).into_iter().flatten() {
                visit(m, g, state, stack);
            }
            stack.pop();
            state.insert(n.to_string(), 2);
        }
        let mut state = BTreeMap::new();
        for n in g.keys() {
            visit(n, &g, &mut state, &mut Vec::new());
        }
        // Every top-level module is placed.
        for n in g.keys().chain(g.values().flatten()) {
            layer(n);
        }
    }

    /// The longest a function may be, in lines from its signature to its closing brace: a
    /// function that does more is split by what it decides. Unit tests are not counted.
    const MAX_FUNCTION_LINES: usize = 80;

    /// The longest a source file may be (its unit tests included, unless they live in a
    /// `tests.rs` of their own): a file that holds more is split by responsibility.
    const MAX_FILE_LINES: usize = 800;

    /// Functions longer than [`MAX_FUNCTION_LINES`] in `text`: (name, first line, length). A
    /// function ends at the first `}` at its own indentation (the shape rustfmt gives).
    fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => text,
        };
        let lines: Vec<&str> = code.lines().collect();
        let head = regex::Regex::new(
            r"^(\s*)(?:pub(?:\([^)]*\))? )?(?:const )?(?:async )?(?:unsafe )?fn (\w+)",
        )
        .unwrap();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let Some(c) = head.captures(l) else { continue };
            if l.trim_end().ends_with(';') {
                continue;
            }
            let end = format!("{}}}", &c[1]);
            if let Some(len) = lines[i + 1..].iter().position(|x| *x == end) {
                if len + 2 > MAX_FUNCTION_LINES {
                    out.push((c[2].to_string(), i + 1, len + 2));
                }
            }
        }
        out
    }

    /// No function outside unit tests is longer than [`MAX_FUNCTION_LINES`], and no file (but a
    /// `tests.rs`) longer than [`MAX_FILE_LINES`].
    #[test]
    fn functions_stay_short() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut list = Vec::new();
        files(&src, &mut list);
        let mut long = Vec::new();
        for p in &list {
            if p.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(p).unwrap();
            let file = p.strip_prefix(&src).unwrap().display();
            for (name, line, len) in long_functions(&text) {
                long.push(format!("{file}:{line} {name} ({len} lines)"));
            }
            let lines = text.lines().count();
            if lines > MAX_FILE_LINES {
                long.push(format!("{file}: the file has {lines} lines"));
            }
        }
        assert!(
            long.is_empty(),
            "functions over {MAX_FUNCTION_LINES} lines or files over {MAX_FILE_LINES}: {long:#?}"
        );
    }

    #[test]
    fn long_functions_are_found() {
        let body = "    x();\n".repeat(MAX_FUNCTION_LINES);
        let text = format!("fn short() {{\n}}\n\npub(crate) async fn long() {{\n{body}}}\n");
        assert_eq!(
            long_functions(&text),
            [("long".to_string(), 4, MAX_FUNCTION_LINES + 2)]
        );
    }

    #[test]
    fn the_reader_sees_through_super_and_groups() {
        let m = vec!["proxy".to_string(), "cached".to_string()];
        let got = imports(
            &m,
            "use super::body::X;\nuse crate::{cache::Y, clock};\nfn f() { crate::backend::z(); }\n// crate::admin::no\n",
        );
        let want: BTreeSet<String> = ["proxy", "cache", "clock", "backend"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
    }
}
