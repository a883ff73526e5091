//! The benchmarks' published figures and their scripts, checked without running them (a full
//! `tests/bench/run-all.sh` takes about 20 minutes on the lab, too long for every CI run):
//! - the README's Benchmarks table is `tests/bench/RESULTS.md`'s, row for row, so no figure is
//!   published that the last run did not write;
//! - that run ran every bench `run-all.sh` lists, each ended ok, and every figure with a goal
//!   says whether it is met;
//! - the bench scripts parse (and their Python helpers compile), and none stops processes by
//!   name (`pkill`, `killall`): a bench stops only what it started, by pid, or it would
//!   interrupt other runs on the host.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use lab::workspace_root;

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The rows of the figures table: the lines of `text` that start with `| ` and name a bench
/// (the header and separator left out).
fn figure_rows(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| line.starts_with("| ") && line.matches(" | ").count() == 6)
        .filter(|line| !line.starts_with("| bench |"))
        .collect()
}

/// The names of the benches in run-all.sh's list: `"operator operator-bench.sh 2"` lines.
fn listed_benches() -> Vec<String> {
    let script = read("tests/bench/run-all.sh");
    let list = script
        .split_once("BENCHES=(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list)
        .expect("run-all.sh has a BENCHES=( ... ) list");
    list.lines()
        .filter_map(|line| line.trim().strip_prefix('"'))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_shows_the_figures_of_results_md() {
    let results = read("tests/bench/RESULTS.md");
    let readme = read("README.md");
    let block = readme
        .split_once("<!-- bench-results:begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- bench-results:end -->"))
        .map(|(block, _)| block)
        .expect("README.md has the bench-results markers");
    let published = figure_rows(block);
    assert!(
        !published.is_empty(),
        "the README's Benchmarks table is empty"
    );
    assert_eq!(
        published,
        figure_rows(&results),
        "the README's Benchmarks table must be RESULTS.md's (tests/bench/run-all.sh writes both)"
    );
}

#[test]
fn the_last_run_ran_every_bench_and_says_whether_each_goal_is_met() {
    let results = read("tests/bench/RESULTS.md");
    assert!(
        !results.contains("Not run this time"),
        "RESULTS.md comes from a run that left benches out"
    );
    for bench in listed_benches() {
        let ran = results
            .lines()
            .find(|line| line.starts_with(&format!("| {bench} | `tests/bench/")))
            .unwrap_or_else(|| panic!("RESULTS.md has no run of the {bench} bench"));
        assert!(ran.ends_with("| ok |"), "the {bench} bench failed: {ran}");
        assert!(
            figure_rows(&results)
                .iter()
                .any(|row| row.starts_with(&format!("| {bench} |"))),
            "RESULTS.md has no figure of the {bench} bench"
        );
    }
    for row in figure_rows(&results) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        let (goal, met) = (cells[5], cells[6]);
        assert!(
            goal.is_empty() || met == "met" || met == "NOT met",
            "a figure with a goal must say met or NOT met: {row}"
        );
    }
}

/// The files of `tests/bench` whose names end in `.ext`.
fn bench_files(ext: &str) -> Vec<PathBuf> {
    fs::read_dir(workspace_root().join("tests/bench"))
        .expect("tests/bench")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect()
}

/// Runs `program` with `args` and then `file`, and fails with its stderr unless it succeeds.
fn check_with(program: &str, args: &[&str], file: &PathBuf) {
    let ran = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    assert!(
        ran.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&ran.stderr)
    );
}

#[test]
fn the_bench_scripts_parse_and_stop_nothing_by_name() {
    let scripts = bench_files("sh");
    assert!(scripts.len() >= 7, "the bench scripts: {scripts:?}");
    for script in scripts {
        check_with("bash", &["-n"], &script);
        let text = fs::read_to_string(&script).expect("readable");
        for word in ["pkill", "killall"] {
            let by_name = text
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == word);
            assert!(
                !by_name,
                "{} stops processes by name ({word})",
                script.display()
            );
        }
    }
}

#[test]
fn the_bench_helpers_in_python_compile() {
    let helpers = bench_files("py");
    assert!(helpers.len() >= 3, "the bench helpers: {helpers:?}");
    for helper in helpers {
        // compile() only: py_compile would leave __pycache__ in the checkout.
        let compile = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')";
        check_with("python3", &["-c", compile], &helper);
    }
}
