//! Imports point one way: every `crate::` path in `src/` (a `use` line, a grouped `use`, a path
//! written in the code, a `super::` that climbs out of its top-level module) must name a module
//! of its own layer or a lower one, in the order the "Layers" list of ARCHITECTURE.md gives, and
//! no import circle may run inside a layer. The list is read from ARCHITECTURE.md itself, so the
//! document and the check cannot drift apart. Unit tests (`tests.rs`, files under a `tests/`
//! folder, `#[cfg(test)] mod` blocks) and the binaries (`src/bin/`) may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers in order, lowest first, each a set of top-level modules.
type Layers = Vec<BTreeSet<String>>;

/// One import: the file and line it is written on, and the top-level modules on both ends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// Reads the numbered list under `## Layers`: each item names its modules in backticks before
/// its first colon (`3. `config`: ...`).
fn parse_layers(architecture: &str) -> Result<Layers, String> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .ok_or("ARCHITECTURE.md has no `## Layers` section")?;
    let mut layers = Vec::new();
    for line in section.lines() {
        let Some((number, rest)) = line.split_once(". ") else {
            continue;
        };
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if number.parse::<usize>() != Ok(layers.len() + 1) {
            return Err(format!(
                "ARCHITECTURE.md: layer {number} is out of order (expected {})",
                layers.len() + 1
            ));
        }
        let names = rest
            .split_once(':')
            .ok_or_else(|| format!("ARCHITECTURE.md: layer {number} has no `:` after its modules"))?
            .0;
        let modules: BTreeSet<String> = names
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        if modules.is_empty() {
            return Err(format!("ARCHITECTURE.md: layer {number} names no module"));
        }
        layers.push(modules);
    }
    if layers.is_empty() {
        return Err("ARCHITECTURE.md: the Layers section lists no layer".into());
    }
    Ok(layers)
}

/// The top-level modules `src/lib.rs` declares.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .chain(lib.lines().filter_map(|l| l.trim().strip_prefix("mod ")))
        .map(|m| m.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// Every `.rs` file under `dir`, but unit tests and the binaries.
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" && name != "bin" {
                source_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "lib.rs" {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`dns/notify.rs` is `["dns", "notify"]`).
fn module_path(relative: &str) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.len() > 1 && parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The lines of `text` that are code outside `#[cfg(test)] mod ... { }` blocks and comments,
/// with their line numbers.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]"
            && let Some((_, next)) = lines.peek()
            && next.trim_start().starts_with("mod ")
            && next.trim_end().ends_with('{')
        {
            // Skip the test module to its closing brace.
            let mut depth = 0i64;
            for (_, l) in lines.by_ref() {
                depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
                if depth <= 0 {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

/// The top-level modules one file imports, each with the line that does.
fn imports_of(relative: &str, text: &str) -> Vec<Import> {
    let path = module_path(relative);
    let me = path[0].clone();
    let mut found = Vec::new();
    let mut add = |line: usize, to: &str| {
        if to != me && to != "self" && !to.is_empty() {
            found.push(Import {
                file: format!("src/{relative}"),
                line,
                from: me.clone(),
                to: to.to_owned(),
            });
        }
    };
    let lines = code_lines(text);
    let mut group: Option<(usize, String)> = None;
    for &(number, line) in &lines {
        // A grouped `use crate::{a::X, b::{Y, Z}}`, possibly over several lines.
        if let Some((start, mut text)) = group.take() {
            text.push_str(line);
            if text.matches('{').count() > text.matches('}').count() {
                group = Some((start, text));
            } else {
                for to in group_heads(&text) {
                    add(start, &to);
                }
            }
            continue;
        }
        if let Some(at) = line.find("crate::{") {
            let text = line[at + "crate::".len()..].to_owned();
            if text.matches('{').count() > text.matches('}').count() {
                group = Some((number, text));
            } else {
                for to in group_heads(&text) {
                    add(number, &to);
                }
            }
        }
        for (at, _) in line.match_indices("crate::") {
            add(number, &ident_at(&line[at + "crate::".len()..]));
        }
        // `super::` enough times climbs out of this file's top-level module.
        for (at, _) in line.match_indices("super::") {
            let before = &line[..at];
            if before.ends_with("super::") {
                continue;
            }
            let mut rest = &line[at..];
            let mut up = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                up += 1;
                rest = r;
            }
            if up >= path.len() {
                add(number, &ident_at(rest));
            }
        }
    }
    found
}

/// The identifier `text` starts with.
fn ident_at(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The first segment of each path at the top level of a `{a::X, b::{Y, Z}, c}` group.
fn group_heads(group: &str) -> Vec<String> {
    let inner = group.trim_start().trim_start_matches('{');
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut chars = inner.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_head = true,
            c if expect_head && (c.is_ascii_alphabetic() || c == '_') => {
                heads.push(ident_at(&inner[i..]));
                expect_head = false;
                while chars
                    .peek()
                    .is_some_and(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    heads
}

/// Everything wrong with `imports` under `layers`: modules in no layer (or in two, or named
/// by a layer but not declared), imports from a higher layer, and circles inside a layer.
fn violations(layers: &Layers, declared: &BTreeSet<String>, imports: &[Import]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for m in layer {
            if let Some(other) = layer_of.insert(m, i + 1) {
                problems.push(format!(
                    "ARCHITECTURE.md puts `{m}` in layers {other} and {}",
                    i + 1
                ));
            }
            if !declared.contains(m) {
                problems.push(format!(
                    "ARCHITECTURE.md layer {} names `{m}`, which src/lib.rs does not declare",
                    i + 1
                ));
            }
        }
    }
    for m in declared {
        if !layer_of.contains_key(m.as_str()) {
            problems.push(format!(
                "module `{m}` (src/lib.rs) is in no layer of ARCHITECTURE.md"
            ));
        }
    }
    let mut same_layer: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        let (Some(&from), Some(&to)) = (layer_of.get(i.from.as_str()), layer_of.get(i.to.as_str()))
        else {
            if !declared.contains(&i.to) {
                problems.push(format!(
                    "{}:{}: `{}` names `crate::{}`, which src/lib.rs does not declare",
                    i.file, i.line, i.from, i.to
                ));
            }
            continue;
        };
        if to > from {
            problems.push(format!(
                "{}:{}: `{}` (layer {from}) imports `{}` (layer {to}), against the layers of ARCHITECTURE.md",
                i.file, i.line, i.from, i.to
            ));
        } else if to == from {
            same_layer.entry(&i.from).or_default().insert(&i.to);
        }
    }
    // Inside a layer imports may go either way, but not around a circle.
    for start in same_layer.keys() {
        let mut stack: Vec<Vec<&str>> = vec![vec![start]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = *path.last().expect("a path is never empty");
            for &next in same_layer.get(last).into_iter().flatten() {
                if next == *start {
                    let mut circle = path.clone();
                    circle.push(next);
                    let at: Vec<String> = imports
                        .iter()
                        .filter(|i| circle.windows(2).any(|w| i.from == w[0] && i.to == w[1]))
                        .map(|i| format!("{}:{}", i.file, i.line))
                        .collect();
                    problems.push(format!(
                        "import circle {} ({})",
                        circle.join(" -> "),
                        at.join(", ")
                    ));
                } else if seen.insert(next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The crate's own layers, declared modules and imports.
fn this_crate() -> (Layers, BTreeSet<String>, Vec<Import>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers =
        parse_layers(&read(&root.join("ARCHITECTURE.md"))).unwrap_or_else(|e| panic!("{e}"));
    let src = root.join("src");
    let declared = declared_modules(&read(&src.join("lib.rs")));
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let imports = files
        .iter()
        .flat_map(|f| {
            let relative = f
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            imports_of(&relative, &read(f))
        })
        .collect();
    (layers, declared, imports)
}

#[test]
fn imports_follow_the_layers_of_architecture_md() {
    let (layers, declared, imports) = this_crate();
    assert!(
        imports.len() > 100,
        "only {} imports found: the reader of src/ is broken",
        imports.len()
    );
    let problems = violations(&layers, &declared, &imports);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const LAYERS: &str = "# Architecture\n\n## Layers\n\nText.\n\n1. `model`, `wire`: the vocabulary.\n2. `snapshot`: what readers read.\n3. `proxy`, `dns`: readers.\n4. `controller`: the writer.\n\n## Invariants\n\n1. `nothing`: here.\n";

fn declared(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn an_import_against_the_layers_is_named_with_its_file_and_line() {
    let layers = parse_layers(LAYERS).expect("the layers");
    assert_eq!(layers.len(), 4, "{layers:?}");
    let modules = declared(&["model", "wire", "snapshot", "proxy", "dns", "controller"]);
    let source = "//! A proxy.\n\nuse crate::snapshot::Snapshot;\nuse crate::{model::Endpoint, wire};\n\nfn f() {\n    // crate::controller in a comment is no import\n    crate::controller::machine::draining(x);\n}\n\n#[cfg(test)]\nmod tests {\n    use crate::controller::Busy;\n}\n";
    let imports = imports_of("proxy/mod.rs", source);
    let named: Vec<(usize, &str)> = imports.iter().map(|i| (i.line, i.to.as_str())).collect();
    assert_eq!(
        named,
        [
            (3, "snapshot"),
            (4, "model"),
            (4, "wire"),
            (8, "controller")
        ]
    );
    assert_eq!(
        violations(&layers, &modules, &imports),
        [
            "src/proxy/mod.rs:8: `proxy` (layer 3) imports `controller` (layer 4), against the layers of ARCHITECTURE.md"
        ]
    );
    // The same file, the writer's side: allowed.
    let imports = imports_of("controller/mod.rs", source);
    assert!(violations(&layers, &modules, &imports).is_empty());
}

#[test]
fn a_module_in_no_layer_and_a_circle_inside_a_layer_are_refused() {
    let layers = parse_layers(LAYERS).expect("the layers");
    let modules = declared(&[
        "model",
        "wire",
        "snapshot",
        "proxy",
        "dns",
        "controller",
        "extra",
    ]);
    let mut imports = imports_of("model.rs", "use crate::wire::WireName;\n");
    // A grouped import over several lines, and a `super::` that leaves its module.
    imports.extend(imports_of(
        "wire/names.rs",
        "use crate::{\n    model::{AliasName, ServiceName},\n};\nfn f() { super::super::dns::x(); }\n",
    ));
    let problems = violations(&layers, &modules, &imports);
    assert_eq!(
        problems,
        [
            "import circle model -> wire -> model (src/model.rs:1, src/wire/names.rs:1)",
            "import circle wire -> model -> wire (src/model.rs:1, src/wire/names.rs:1)",
            "module `extra` (src/lib.rs) is in no layer of ARCHITECTURE.md",
            "src/wire/names.rs:4: `wire` (layer 1) imports `dns` (layer 3), against the layers of ARCHITECTURE.md",
        ]
    );
}
