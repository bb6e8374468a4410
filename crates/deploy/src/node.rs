//! Node apps: TypeScript stripped to JavaScript by oxc at deploy time, requirements installed
//! with npm into the cache (shared by apps with the same set), run with `node index.js`.

use crate::cache::{self, Cache};
use crate::progress::Progress;
use crate::python::{version_of, which};
use crate::DeployError;
use std::path::{Path, PathBuf};

/// A prepared Node app.
pub struct Prepared {
    /// argv, run in the build folder.
    pub command: Vec<String>,
    /// Whether the requirement set came from the cache.
    pub reused: bool,
}

/// Reads npm requirements: names or `name@range`, split by spaces, commas or lines. Anything
/// that npm would fetch from elsewhere than the registry (paths, URLs, git, options) is refused.
pub fn parse_requirements(text: &str) -> Result<Vec<String>, DeployError> {
    let mut out = Vec::new();
    for spec in text.split([' ', ',', '\n', '\r', '\t']) {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let allowed = spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@/._~^<>=*+-".contains(c));
        if spec.starts_with('-') || spec.starts_with('.') || spec.starts_with('/') || !allowed {
            return Err(DeployError::BadUpload(format!(
                "requirement {spec:?} is not allowed: list npm registry packages (name or name@version) only"
            )));
        }
        out.push(spec.to_string());
    }
    Ok(out)
}

/// `dependencies` of an uploaded package.json, as `name@range`.
fn package_json_dependencies(dir: &Path) -> Result<Vec<String>, DeployError> {
    let Ok(text) = std::fs::read_to_string(dir.join("package.json")) else {
        return Ok(Vec::new());
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| DeployError::BadUpload(format!("package.json is not valid JSON: {e}")))?;
    let deps = json
        .get("dependencies")
        .and_then(|d| d.as_object())
        .map(|d| {
            d.iter()
                .map(|(name, range)| format!("{name}@{}", range.as_str().unwrap_or("*")))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    parse_requirements(&deps)
}

/// Prepares the app in `dir` (which holds `index.ts` or `index.js`).
pub async fn prepare(
    dir: &Path,
    requirements: &[String],
    cache: &Cache,
    progress: &Progress,
) -> Result<Prepared, DeployError> {
    let mut requirements = requirements.to_vec();
    requirements.extend(package_json_dependencies(dir)?);
    let module = strip_all(dir)?;
    if module {
        mark_module(dir)?;
    }
    let node = which("node")?;
    let mut reused = false;
    if !requirements.is_empty() {
        let npm = which("npm")?;
        let key = cache::key("node", &version_of(&node).await, &requirements);
        let specs = requirements.clone();
        progress.stage("installing");
        let (deps, was_there) = cache
            .ensure("node", &key, |dir| async move {
                tokio::fs::write(dir.join("package.json"), "{\"private\": true}\n")
                    .await
                    .map_err(|e| DeployError::io("cannot write package.json", e))?;
                cache::run_installer(
                    "npm",
                    tokio::process::Command::new(&npm)
                        .args([
                            "install",
                            // No install scripts: they would run a package's own code, as
                            // valet's user, at deploy time.
                            "--ignore-scripts",
                            "--no-audit",
                            "--no-fund",
                            "--prefix",
                        ])
                        .arg(&dir)
                        .args(&specs),
                    progress,
                )
                .await
            })
            .await?;
        reused = was_there;
        let link = dir.join("node_modules");
        let _ = std::fs::remove_dir_all(&link);
        std::os::unix::fs::symlink(deps.join("node_modules"), &link)
            .map_err(|e| DeployError::io("cannot link node_modules", e))?;
    }
    if !dir.join("index.js").is_file() {
        return Err(DeployError::BadUpload(
            "a node upload needs index.ts or index.js at its top".into(),
        ));
    }
    Ok(Prepared {
        command: vec![node, "index.js".into()],
        reused,
    })
}

/// Strips every `.ts` file (outside node_modules) to a `.js` beside it. Returns whether the
/// entry point uses ES module syntax.
fn strip_all(dir: &Path) -> Result<bool, DeployError> {
    let mut module = false;
    for path in ts_files(dir) {
        let source = std::fs::read_to_string(&path).map_err(|_| {
            DeployError::BadUpload(format!("{} is not UTF-8 text", relative(dir, &path)))
        })?;
        let (js, is_module) = strip_types(&source, &path)
            .map_err(|e| DeployError::Compile(format!("{}: {e}", relative(dir, &path))))?;
        if path.file_name().is_some_and(|n| n == "index.ts") && path.parent() == Some(dir) {
            module = is_module;
        }
        std::fs::write(path.with_extension("js"), js)
            .map_err(|e| DeployError::io("cannot write JavaScript", e))?;
    }
    if dir.join("index.js").is_file() && !dir.join("index.ts").is_file() {
        let source = std::fs::read_to_string(dir.join("index.js")).unwrap_or_default();
        module = source.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("import ") || l.starts_with("export ")
        });
    }
    Ok(module)
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

fn ts_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && entry.file_name() != "node_modules" {
                stack.push(path);
            } else if kind.is_file()
                && path.extension().is_some_and(|e| e == "ts")
                && !path.to_string_lossy().ends_with(".d.ts")
            {
                out.push(path);
            }
        }
    }
    out
}

/// Node reads `.js` as CommonJS unless the nearest package.json says `"type": "module"`.
fn mark_module(dir: &Path) -> Result<(), DeployError> {
    let path = dir.join("package.json");
    let mut json: serde_json::Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| DeployError::BadUpload(format!("package.json is not valid JSON: {e}")))?,
        Err(_) => serde_json::json!({ "private": true }),
    };
    if let Some(obj) = json.as_object_mut() {
        obj.entry("type").or_insert_with(|| "module".into());
    }
    std::fs::write(&path, json.to_string())
        .map_err(|e| DeployError::io("cannot write package.json", e))
}

/// TypeScript to JavaScript with oxc: parse, build scopes, strip types, print. Returns the
/// JavaScript and whether the file uses ES module syntax.
pub fn strip_types(source: &str, path: &Path) -> Result<(String, bool), String> {
    use oxc_allocator::Allocator;
    use oxc_codegen::Codegen;
    use oxc_parser::Parser;
    use oxc_semantic::SemanticBuilder;
    use oxc_span::SourceType;
    use oxc_transformer::{TransformOptions, Transformer};

    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, source, SourceType::ts()).parse();
    if let Some(error) = parsed.errors.first() {
        // Where, as an editor counts it: the message alone does not say which line to fix.
        let offset = error
            .labels
            .as_ref()
            .and_then(|l| l.first())
            .map(|l| l.offset());
        return Err(match offset {
            Some(offset) => {
                let (line, column) = line_column(source, offset);
                format!("line {line}, column {column}: {error}")
            }
            None => error.to_string(),
        });
    }
    let module = parsed.module_record.has_module_syntax;
    let mut program = parsed.program;
    let scoping = SemanticBuilder::new()
        .with_excess_capacity(2.0)
        .build(&program)
        .semantic
        .into_scoping();
    let options = TransformOptions::default();
    let transformed =
        Transformer::new(&allocator, path, &options).build_with_scoping(scoping, &mut program);
    if let Some(error) = transformed.errors.first() {
        return Err(error.to_string());
    }
    Ok((Codegen::new().build(&program).code, module))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..source.floor_char_boundary(offset.min(source.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_its_line_and_column() {
        let ts = "const a: number = 1;\nconst b = (;\n";
        let error = strip_types(ts, Path::new("index.ts")).unwrap_err();
        assert!(error.starts_with("line 2, column 12: "), "{error}");
    }

    #[test]
    fn types_are_stripped() {
        let ts = "import type { Request } from 'express';\n\
                  import express from 'express';\n\
                  interface A { x: number }\n\
                  const port: number = Number(process.env.PORT ?? 8000);\n\
                  function f(a: A): string { return `${a.x}` }\n\
                  export default f;\n\
                  export const app = express();\n";
        let (js, module) = strip_types(ts, Path::new("index.ts")).unwrap();
        assert!(module);
        assert!(!js.contains("interface"), "{js}");
        assert!(!js.contains(": number"), "{js}");
        assert!(!js.contains("Request"), "{js}");
        assert!(js.contains("import express from"), "{js}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(strip_types("let x: = ;", Path::new("index.ts")).is_err());
    }

    #[test]
    fn npm_specs() {
        assert_eq!(
            parse_requirements("express cors@2").unwrap(),
            ["express", "cors@2"]
        );
        assert!(parse_requirements("file:../x").is_err());
        assert!(parse_requirements("git+https://x").is_err());
        assert!(parse_requirements("--registry=x").is_err());
    }
}
