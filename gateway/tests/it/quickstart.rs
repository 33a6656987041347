//! The docs stay true: the README's quick start runs, as written, against a fresh server, and
//! every relative link in `README.md` and `docs/*.md` leads to a file (and heading) that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support;

/// The line that marks the README's quick-start block; the ```sh fence follows it.
const MARKER: &str = "<!-- quickstart: test runs this block -->";
/// How the block runs `cairn` from a checkout; the test puts the built binary in its place.
const CARGO_RUN: &str = "cargo run -q --release -p gateway --";
/// The server address the block uses; the test puts its server's in its place.
const SERVER: &str = "localhost:3000";
/// The whole block gets this long, from a key to the task seen on the feed.
const DEADLINE: Duration = Duration::from_secs(60);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the repository")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The shell block right after [`MARKER`] in `markdown`.
fn quickstart_block(markdown: &str) -> String {
    let after = markdown
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("README.md has no `{MARKER}` line"))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("a ```sh fence right after the quick-start marker");
    let (block, _) = body
        .split_once("\n```")
        .expect("the quick-start block's fence is closed");
    block.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_creates_a_task_and_sees_it_arrive_on_the_feed() {
    let block = quickstart_block(&read(&repository().join("README.md")));
    for needle in [CARGO_RUN, SERVER] {
        assert!(
            block.contains(needle),
            "the quick-start block no longer says `{needle}`, which this test replaces:\n{block}"
        );
    }
    let app = support::spawn_app().await;
    let script = block
        .replace(CARGO_RUN, &format!("'{}'", env!("CARGO_BIN_EXE_cairn")))
        .replace(SERVER, &app.addr.to_string());
    let dir = std::env::temp_dir().join(format!("cairn-qs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a working folder");

    // `keys create` writes to the test server's database with its key, as it would beside a
    // server started from the same folder.
    let mut child = tokio::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .env("DATABASE_URL", app.db.url())
        .env("CAIRN_SECRET_KEY", support::SECRET_KEY)
        .env_remove("CAIRN_DATA_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout stops the background `curl` too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs");
    let stdout = collect(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));
    let status = tokio::time::timeout(DEADLINE, child.wait()).await;
    if status.is_err() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = child.kill().await;
    }
    let stdout = stdout.await.expect("read stdout");
    let stderr = stderr.await.expect("read stderr");
    let report = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- script\n{script}");
    match status {
        Err(_) => panic!("the quick start did not finish within {DEADLINE:?}:\n{report}"),
        Ok(status) => {
            let status = status.expect("wait for bash");
            assert!(
                status.success(),
                "the quick start failed ({status}):\n{report}"
            );
        }
    }

    let pool = app.db.pool(1).await;
    let tasks: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'task.created' ORDER BY global_position",
    )
    .fetch_all(&pool)
    .await
    .expect("read the created tasks");
    pool.close().await;
    assert_eq!(
        tasks.len(),
        1,
        "the quick start creates one task: {tasks:?}"
    );
    let seen = format!(
        r#"{{"type":"cairn.task.created.v1","subject":"task/{}"}}"#,
        tasks[0]
    );
    assert!(
        stdout.lines().any(|l| l == seen),
        "the feed's `task.created` of the new task, {seen}, is not in the output:\n{stdout}\n--- stderr\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// Everything `pipe` gives until it closes (or its writer is killed), as text.
fn collect(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        // Bounded, in case something outside the process group still holds the pipe.
        let _ = tokio::time::timeout(
            DEADLINE + Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut bytes),
        )
        .await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Markdown lines outside fenced code blocks, with inline code spans blanked out.
fn prose_lines(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, piece)| piece)
            .collect::<Vec<_>>()
            .join(" ");
        lines.push(prose);
    }
    lines
}

/// The targets of `[text](target)` links.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading in `markdown` (code blocks excluded).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_relative_link_in_the_docs_resolves_to_a_file_in_the_repository() {
    let root = repository().canonicalize().expect("the repository's path");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("a docs folder")
        .map(|e| e.expect("a docs entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds no pages");
    pages.extend(docs);

    let mut checked = 0;
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(page);
        let here = page.parent().expect("a page sits in a folder");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                match here.join(path).canonicalize() {
                    Ok(file) if file.starts_with(&root) => file,
                    Ok(file) => {
                        broken.push(format!(
                            "{}: `{target}` leaves the repository ({})",
                            page.display(),
                            file.display()
                        ));
                        continue;
                    }
                    Err(_) => {
                        broken.push(format!("{}: `{target}` is no file", page.display()));
                        continue;
                    }
                }
            };
            let Some(fragment) = fragment else { continue };
            if file.extension().is_some_and(|x| x == "md")
                && !anchors(&read(&file)).contains(fragment)
            {
                broken.push(format!(
                    "{}: `{target}`: {} has no heading `#{fragment}`",
                    page.display(),
                    file.display()
                ));
            }
        }
    }
    assert!(
        checked > 10,
        "too few relative links found ({checked}): is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_short() {
    let bytes = read(&repository().join("README.md")).len();
    assert!(
        bytes <= 8300,
        "README.md is {bytes} bytes; keep it at about 8 KB and move detail to docs/"
    );
}
