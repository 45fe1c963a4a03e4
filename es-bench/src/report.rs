//! The header every report starts with: what ran, where and when.

use std::process::Command;

/// Prints the date, nproc, the es commit measured and the command line, as markdown.
///
/// `bin` is the binary's name, to print the `cargo run` line that reproduces the run.
pub fn print_header(bin: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cargo = if args.is_empty() {
        format!("cargo run --release --bin {bin}")
    } else {
        format!("cargo run --release --bin {bin} -- {}", args.join(" "))
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "- date: {}",
        output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
    );
    println!("- nproc: {nproc}");
    println!(
        "- load average (1, 5, 15 min) at the end of the run: {}",
        load_average()
    );
    println!("- es commit: {}", es_commit());
    println!("- command: `{cargo}` (in es-bench/)");
    if let Ok(scale) = std::env::var("ES_BENCH_SCALE") {
        println!("- ES_BENCH_SCALE={scale}");
    }
}

/// The commit of the es sources this binary was built against, `+dirty` if they had
/// uncommitted changes (as far as git can tell at run time).
fn es_commit() -> String {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let commit = output("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args([
            "-C",
            repo,
            "status",
            "--porcelain",
            "--",
            "es-core",
            "es-macros",
            "es-sqlite",
            "es-postgres",
        ])
        .output()
        .is_ok_and(|out| !out.stdout.is_empty());
    if dirty {
        format!("{commit}+dirty (uncommitted changes in the es crates)")
    } else {
        commit
    }
}

/// The first three fields of `/proc/loadavg`: other work on the machine skews the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The trimmed stdout of a command, or `unknown`.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
