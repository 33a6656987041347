//! DESIGN's architecture invariants that a reading of the source can check: no module cycles
//! inside any crate (a module is a file; an edge is any `crate::` or `super::` path in it), and
//! no SQL in the gateway's server library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file relative to `src` (`lib.rs`/`main.rs`/`mod.rs` name their
/// folder): `http/auth.rs` is `["http", "auth"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The module paths a file refers to: each `crate::a::b::c` or `super::x` path, cut to the
/// longest prefix that is a module (a file) of the crate.
fn references(text: &str, me: &[String], modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    // Doc comments and line comments name modules without depending on them.
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    for (start, base) in [("crate::", Vec::new()), ("super::", parent(me))] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            rest = &rest[i + start.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut path = base.clone();
            let segments = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("");
            for segment in segments.split("::").filter(|s| !s.is_empty()) {
                if segment == "super" {
                    path.pop();
                } else {
                    path.push(segment.to_owned());
                }
            }
            while !path.is_empty() && !modules.contains(&path) {
                path.pop();
            }
            if !path.is_empty() && path != me {
                found.insert(path);
            }
        }
    }
    found
}

fn parent(me: &[String]) -> Vec<String> {
    me[..me.len().saturating_sub(1)].to_vec()
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut names: Vec<String> = stack[from..].iter().map(|n| n.join("::")).collect();
                names.push(node.join("::"));
                return Some(names);
            }
            _ => {}
        }
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, state, stack) {
                return Some(found);
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(found) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(found);
        }
    }
    None
}

#[test]
fn no_crate_has_a_module_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["domain", "eventstore", "commands", "projections", "gateway"] {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        // The library and the binary are separate crates that share a folder.
        for (entry, skip) in [("lib", "cli"), ("main", "")] {
            let files: Vec<&PathBuf> = files
                .iter()
                .filter(|f| {
                    let m = module_of(&src, f);
                    if entry == "lib" {
                        m.first().is_none_or(|first| first != skip)
                            && f.file_name().is_some_and(|n| n != "main.rs")
                    } else {
                        m.first().is_some_and(|first| first == "cli")
                            || f.file_name().is_some_and(|n| n == "main.rs")
                    }
                })
                .collect();
            let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
            let mut graph = BTreeMap::new();
            for file in &files {
                let me = module_of(&src, file);
                let text = std::fs::read_to_string(file).expect("read source");
                let edges = references(&text, &me, &modules);
                graph.insert(me, edges);
            }
            assert!(
                cycle(&graph).is_none(),
                "{krate} ({entry}) has a module cycle: {}",
                cycle(&graph).unwrap_or_default().join(" -> ")
            );
        }
    }
}

#[test]
fn the_gateway_server_holds_no_sql() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        // The CLI (bench anchors included) is the binary, not the server library.
        if file.strip_prefix(&src).is_ok_and(|p| p.starts_with("cli")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if ["sqlx::query", "query_scalar", "query_as", "QueryBuilder"]
                .iter()
                .any(|q| line.contains(q))
            {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL in the gateway:\n{}",
        found.join("\n")
    );
}
