//! `sozu-bench [--quick] [--only SECTION,...] [--sozu PATH] [--sozu21 PATH] [--out FILE]`: runs the benchmarks and writes a Markdown
//! report. Figures are ratios against a baseline measured in the same run on the same
//! machine, so they compare across machines; absolute numbers are given for context.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::time::Duration;

mod audit;
mod channel;
mod dashboard;
mod master;
mod state;
mod traffic;
mod upgrade;

/// One measured row: what, our figure, the baseline's, and the ratio.
#[derive(Debug)]
pub struct Row {
    pub name: String,
    pub ours: String,
    pub baseline: String,
    pub ratio: f64,
    pub target: String,
}

#[derive(Debug)]
pub struct Section {
    pub title: &'static str,
    pub baseline: &'static str,
    pub rows: Vec<Row>,
}

/// Rate in units per second.
pub fn rate(units: f64, took: Duration) -> f64 {
    units / took.as_secs_f64().max(1e-9)
}

/// The shortest of `runs` timings (the least disturbed by the rest of the machine).
pub fn best_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs.max(1)).map(|_| f()).min().expect("at least one run")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--measure-rss") {
        let what = args.get(i + 1).map_or("state", String::as_str);
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        state::measure_rss(what, n);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out = args.iter().position(|a| a == "--out").and_then(|i| args.get(i + 1)).cloned();

    let sozu = args.iter().position(|a| a == "--sozu").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from);
    // `--sozu21 PATH`: a Sōzu 2.1 binary, measured in the same run for comparison
    let sozu21 = args.iter().position(|a| a == "--sozu21").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from);
    // `--only NAME[,NAME]`: run only these sections (channel, audit, state, master, dashboard;
    // master-load: only the LoadState rows of the master; traffic: the data plane;
    // upgrade: main and worker upgrades)
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let mut sections = Vec::new();
    if wanted("channel") {
        sections.push(channel::run(quick));
    }
    if wanted("audit") {
        sections.push(audit::run(quick));
    }
    if wanted("state") {
        sections.push(state::run(quick));
    }
    if wanted("master") || wanted("master-load") {
        match &sozu {
            Some(path) => sections.push(master::run(path, sozu21.as_deref(), quick, !wanted("master"))),
            None => eprintln!("no --sozu PATH: the master benchmarks are skipped"),
        }
    }
    if wanted("upgrade") {
        match &sozu {
            Some(path) => sections.push(upgrade::run(path, sozu21.as_deref(), quick)),
            None => eprintln!("no --sozu PATH: the upgrade benchmarks are skipped"),
        }
    }
    if wanted("traffic") {
        match &sozu {
            Some(path) => sections.extend(traffic::run(path, sozu21.as_deref(), quick)),
            None => eprintln!("no --sozu PATH: the data-plane benchmarks are skipped"),
        }
    }
    if wanted("dashboard") {
        sections.push(dashboard::run(sozu.as_deref(), quick));
    }

    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str("Produced by `cargo xtask bench` (release build");
    if quick {
        md.push_str(", `--quick`");
    }
    if sozu21.is_some() {
        md.push_str(", `--sozu21 <Sōzu 2.1.1 binary>` for the comparison rows");
    }
    md.push_str(
        "). Each figure is a ratio to a baseline measured in the same run; absolute \
         numbers are for context only and vary by machine.\n\n",
    );
    let _ = writeln!(md, "Machine: {} cores.\n", std::thread::available_parallelism().map_or(0, |n| n.get()));
    for s in &sections {
        let _ = writeln!(md, "## {}\n\nBaseline: {}\n", s.title, s.baseline);
        md.push_str("| case | ours | baseline | ratio | target |\n|---|---|---|---|---|\n");
        for r in &s.rows {
            let _ = writeln!(md, "| {} | {} | {} | {:.2} | {} |", r.name, r.ours, r.baseline, r.ratio, r.target);
        }
        md.push('\n');
    }
    print!("{md}");
    if let Some(path) = out {
        std::fs::write(&path, md).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}
