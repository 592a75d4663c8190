//! `cargo xtask`: the project's automation, in Rust so that a fresh machine with only
//! a Rust toolchain can run it. Depends on no workspace crate.
//!
//! - `test`  — everything CI checks (fmt, clippy, tests, per-crate tests of the reusable
//!   crates, docs, cargo-deny, fuzz targets build, tidy). The end-to-end tests include
//!   the compatibility tests against Sōzu 2.1.1's own binary, built once from crates.io
//!   into `target/sozu21` (or given by `SOZU21=path`).
//! - `build` — the release binary.
//! - `bench` — runs the benchmarks and rewrites docs/BENCHMARKS.md.
//! - `fuzz <target> [seconds]` — runs one fuzz target (needs cargo-fuzz; nightly features
//!   are enabled with RUSTC_BOOTSTRAP=1).
//! - `tidy`  — repository hygiene checks (file length, crate roots documented).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod tidy;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("build") => build(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("tidy") => tidy::check(&root()),
        _ => {
            eprintln!("usage: cargo xtask <test|build|bench [--quick]|fuzz <target> [seconds]|tidy>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(what: &str, cmd: &mut Command) -> Result {
    eprintln!("xtask: == {what}");
    let status = cmd.status().map_err(|e| format!("{what}: cannot run: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} failed ({status})")) }
}

/// Crates designed for reuse: tested alone so feature unification cannot hide a
/// missing dependency.
const REUSABLE: &[&str] = &["peer-identity", "audit"];

fn test() -> Result {
    run("cargo fmt --check", cargo().args(["fmt", "--all", "--check"]))?;
    run("tidy", cargo().args(["run", "--quiet", "-p", "xtask", "--", "tidy"]))?;
    run("cargo clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    let sozu21 = sozu21()?;
    run(
        "cargo test (workspace: unit, integration, doc, end to end with Sōzu 2.1.1's binary)",
        cargo().args(["test", "--workspace", "--locked"]).env("SOZU21", &sozu21).env("SOZU21_REQUIRED", "1"),
    )?;
    for krate in REUSABLE {
        run(&format!("cargo test -p {krate} (alone)"), cargo().args(["test", "-p", krate, "--locked"]))?;
    }
    run("cargo doc", cargo().args(["doc", "--workspace", "--no-deps", "--locked"]).env("RUSTDOCFLAGS", "-D warnings"))?;
    run("fuzz targets build", cargo().args(["check", "--manifest-path", "fuzz/Cargo.toml", "--bins"]))?;
    deny()?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// Sōzu 2.1.1's own binary, which the compatibility tests drive against ours: `SOZU21`
/// if set, else built once from crates.io into `target/sozu21` (about ten minutes on
/// two cores; later runs reuse it).
fn sozu21() -> Result<PathBuf> {
    if let Some(path) = env::var_os("SOZU21") {
        return Ok(PathBuf::from(path));
    }
    let dir = root().join("target/sozu21");
    let bin = dir.join("bin/sozu");
    let version = Command::new(&bin).arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("sozu 2.1.1")) {
        return Ok(bin);
    }
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(|e| format!("no vendored protoc: {e}"))?;
    run(
        "build Sōzu 2.1.1 from crates.io for the compatibility tests (once)",
        cargo()
            .args(["install", "sozu", "--version", "=2.1.1", "--locked", "--root"])
            .arg(&dir)
            .env("PROTOC", protoc)
            .env("CARGO_TARGET_DIR", root().join("target/sozu21-build")),
    )?;
    Ok(bin)
}

fn deny() -> Result {
    let have = cargo().args(["deny", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !have {
        run("install cargo-deny", cargo().args(["install", "--locked", "cargo-deny"]))?;
    }
    // `advisories` needs the RustSec database from the network, unreachable here.
    run("cargo deny", cargo().args(["deny", "check", "bans", "licenses", "sources"]))
}

fn build() -> Result {
    run("cargo build --release", cargo().args(["build", "--release", "--locked", "-p", "sozu-bin"]))
}

fn bench(args: &[String]) -> Result {
    let out = root().join("docs/BENCHMARKS.md");
    build()?;
    let sozu = root().join("target/release/sozu");
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--locked", "-p", "sozu-bench", "--"])
        .arg("--out")
        .arg(&out)
        .arg("--sozu")
        .arg(&sozu)
        .args(args);
    run("benchmarks", &mut cmd)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

fn fuzz(args: &[String]) -> Result {
    let target = args.first().ok_or("usage: cargo xtask fuzz <target> [seconds]")?;
    let seconds = args.get(1).map(String::as_str).unwrap_or("60");
    run(
        "cargo fuzz run",
        cargo().current_dir(root().join("fuzz")).env("RUSTC_BOOTSTRAP", "1").args([
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
        ]),
    )
}
