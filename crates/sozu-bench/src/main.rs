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

/// The sections `--only` accepts.
const SECTIONS: [&str; 8] = ["channel", "audit", "state", "master", "master-load", "upgrade", "traffic", "dashboard"];

const USAGE: &str = "\
usage: sozu-bench [--quick] [--only SECTION[,SECTION...]] [--sozu PATH] [--sozu21 PATH] [--out FILE]
       sozu-bench --measure-rss state|list [N]   (internal: one RSS measurement)

Runs the benchmarks and prints a Markdown report (to FILE with --out).

  --quick          fewer and shorter rounds (a smoke run; figures are rougher)
  --only LIST      only these sections: channel, audit, state, master, master-load
                   (the LoadState rows of master), upgrade, traffic, dashboard
  --sozu PATH      our release `sozu` binary; the master, upgrade and traffic
                   sections need it and are skipped without it
  --sozu21 PATH    a Sōzu 2.1 binary, measured in the same run for comparison
  --out FILE       write the report to FILE instead of standard output
  -h, --help       this help

`cargo xtask bench` builds everything and runs all sections into docs/BENCHMARKS.md.";

/// What the command line asks for.
#[derive(Debug, Default)]
struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    sozu: Option<std::path::PathBuf>,
    sozu21: Option<std::path::PathBuf>,
    out: Option<String>,
}

/// Parses the arguments; `Err` holds the message to print before the usage.
fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--only" => {
                let list: Vec<String> = value()?.split(',').map(str::to_string).collect();
                if let Some(bad) = list.iter().find(|n| !SECTIONS.contains(&n.as_str())) {
                    return Err(format!("unknown section {bad:?} (known: {})", SECTIONS.join(", ")));
                }
                parsed.only = Some(list);
            }
            "--sozu" => parsed.sozu = Some(value()?.into()),
            "--sozu21" => parsed.sozu21 = Some(value()?.into()),
            "--out" => parsed.out = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    if args.first().is_some_and(|a| a == "--measure-rss") {
        let what = args.get(1).map_or("state", String::as_str);
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        state::measure_rss(what, n);
        return;
    }
    let Args { quick, only, sozu, sozu21, out } = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("sozu-bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
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

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn arguments_are_parsed_and_mistakes_refused() {
        let parsed =
            parse_args(&args(&["--quick", "--only", "state,traffic", "--sozu", "s", "--out", "o.md"])).unwrap();
        assert!(parsed.quick);
        assert_eq!(parsed.only, Some(vec!["state".to_string(), "traffic".to_string()]));
        assert_eq!(parsed.sozu.as_deref(), Some(std::path::Path::new("s")));
        assert_eq!(parsed.out.as_deref(), Some("o.md"));
        assert!(parsed.sozu21.is_none());
        assert!(parse_args(&args(&[])).unwrap().only.is_none(), "no --only: every section");
        // a typo must not start a full run
        assert!(parse_args(&args(&["--qiuck"])).unwrap_err().contains("unknown argument \"--qiuck\""));
        assert!(parse_args(&args(&["--only", "stat"])).unwrap_err().contains("unknown section \"stat\""));
        assert!(parse_args(&args(&["--out"])).unwrap_err().contains("--out needs a value"));
    }
}
