//! Names the build: `SUPERAPP_BUILD` is the commit of the checkout it was
//! built in and that commit's date (`86d43c0 2026-12-04`; changes not yet
//! committed are not told), or `unknown` outside a git checkout (a source
//! archive). Two builds of one version then tell themselves apart in
//! `--version`, backups and `/metrics`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| text.trim().to_string())
}

fn main() {
    let build = match git(&["log", "-1", "--format=%h %cs"]) {
        Some(commit) if !commit.is_empty() => commit,
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=SUPERAPP_BUILD={build}");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit moves HEAD or the branch it names. Only files that exist
    // are watched: cargo reruns the script on every build for one that
    // does not.
    let dir =
        |arg: &str| git(&["rev-parse", arg]).map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join(d));
    let (Some(git_dir), Some(common)) = (dir("--git-dir"), dir("--git-common-dir")) else {
        return;
    };
    let mut watched: Vec<PathBuf> = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
