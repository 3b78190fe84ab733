//! Packaging: `--version` names the commit and the build date, the man page is generated from
//! the command line's definitions, the systemd unit verifies, and the license files match
//! Cargo.toml's `license`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_langur");

#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let re = regex::Regex::new(
        r"^langur \d+\.\d+\.\d+ \(([0-9a-f]{7,40}|unknown), built \d{4}-\d{2}-\d{2}\)\n$",
    )
    .unwrap();
    assert!(re.is_match(&text), "{text:?}");
    // In a git checkout the commit is one of the checkout's (the one the binary was last built
    // at: a commit that changes no source does not rebuild it).
    let in_git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .is_ok_and(|h| h.status.success());
    if in_git {
        let commit = &re.captures(&text).unwrap()[1];
        assert_ne!(commit, "unknown", "{text}");
        let known = Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .status()
            .unwrap();
        assert!(known.success(), "{text}: not a commit of this checkout");
    }
}

#[test]
fn the_man_page_is_generated_from_the_command_line() {
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "{}",
        &page[..80.min(page.len())]
    );
    assert!(
        page.contains(".TH langur 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains("SUBCOMMANDS"), "{page}");
    // What an operator looks for beyond the options.
    for section in [
        ".SH ENVIRONMENT",
        "LANGUR_LOG",
        ".SH SIGNALS",
        "SIGHUP",
        "SIGUSR1",
    ] {
        assert!(page.contains(section), "{section}: {page}");
    }
    for sub in ["run", "check", "explain", "demo"] {
        assert!(page.contains(&format!("langur\\-{sub}")), "{sub}: {page}");
        let out = Command::new(BIN).args(["man", sub]).output().unwrap();
        assert!(out.status.success(), "{sub}");
        let sub_page = String::from_utf8_lossy(&out.stdout);
        assert!(
            sub_page.contains(&format!(".TH langur-{sub} 1")),
            "{sub_page}"
        );
    }
    let explain = Command::new(BIN).args(["man", "explain"]).output().unwrap();
    let explain = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.contains("response\\-header"), "{explain}");
    let bad = Command::new(BIN).args(["man", "nope"]).output().unwrap();
    assert!(!bad.status.success());
    // man(1) renders it, when it is there.
    if Command::new("man").arg("--version").output().is_ok() {
        let dir = crate::common::Scratch::new("man");
        let file = dir.join("langur.1");
        std::fs::write(&file, page.as_bytes()).unwrap();
        let shown = Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        assert!(text.contains("explain"), "{text}");
        assert!(
            text.contains("SIGUSR1") && text.contains("LANGUR_LOG"),
            "{text}"
        );
    }
}

/// `systemd-analyze verify` accepts the unit without a warning (when systemd is there), with
/// its `ExecStart` pointed at the binary under test.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string("contrib/langur.service").unwrap();
    for key in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(key), "{key}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not found: the unit's syntax is not verified");
        return;
    }
    let dir = crate::common::Scratch::new("unit");
    let file = dir.join("langur.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/langur", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "systemd-analyze warns: {err}");
}

#[test]
fn license_files_match_cargo_toml() {
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    let license = manifest
        .lines()
        .find_map(|l| l.strip_prefix("license = "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(license, "MIT OR Apache-2.0");
    let mit = std::fs::read_to_string("LICENSE-MIT").unwrap();
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = std::fs::read_to_string("LICENSE-APACHE").unwrap();
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0"));
    let both = std::fs::read_to_string("LICENSE").unwrap();
    assert!(both.contains("MIT OR Apache-2.0"));
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged() {
    let d = std::fs::read_to_string("contrib/Dockerfile").unwrap();
    assert!(d.matches("\nFROM ").count() + usize::from(d.starts_with("FROM ")) >= 2);
    assert!(d.contains("AS build") && d.contains("COPY --from=build"));
    let user = d.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
}
