//! The Procfile: `name: component [args…]` lines naming the app's process types.

use std::collections::BTreeMap;
use std::fmt;

/// One process type: which slug component runs it, with which arguments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessType {
    pub name: String,
    /// File name of the component inside the slug, always ending in `.wasm`.
    pub component: String,
    pub args: Vec<String>,
}

impl ProcessType {
    /// `web` is served over HTTP; every other type runs `wasi:cli/run`.
    pub fn is_web(&self) -> bool {
        self.name == "web"
    }
    /// `release` runs once before a deploy, never as part of the formation.
    pub fn is_release(&self) -> bool {
        self.name == "release"
    }
}

/// The parsed Procfile, process types keyed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Procfile {
    pub processes: BTreeMap<String, ProcessType>,
}

/// A Procfile line that could not be understood; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Procfile line {line}: {message}")]
pub struct ProcfileError {
    pub line: usize,
    pub message: String,
}

impl Procfile {
    /// Parses Procfile text. Comments (`#`) and blank lines are allowed.
    pub fn parse(text: &str) -> Result<Procfile, ProcfileError> {
        let mut processes = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| ProcfileError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((name, command)) = trimmed.split_once(':') else {
                return Err(err(format!(
                    "expected `name: component [args…]`, found `{trimmed}`"
                )));
            };
            let name = name.trim();
            if !valid_process_name(name) {
                return Err(err(format!(
                    "invalid process type name `{name}` (use letters, digits, `-` and `_`)"
                )));
            }
            let mut words = command.split_whitespace();
            let Some(component) = words.next() else {
                return Err(err(format!("process type `{name}` names no component")));
            };
            if component.contains('/') || component.starts_with('.') {
                return Err(err(format!(
                    "component `{component}` must be a plain name from the slug, like `web` or `web.wasm`"
                )));
            }
            let component = component_file_name(component);
            let process = ProcessType {
                name: name.to_string(),
                component,
                args: words.map(str::to_string).collect(),
            };
            if processes.insert(name.to_string(), process).is_some() {
                return Err(err(format!("process type `{name}` is defined twice")));
            }
        }
        Ok(Procfile { processes })
    }

    /// The Procfile of an app without one: its only component serves `web`.
    pub fn single_web(component: &str) -> Procfile {
        let process = ProcessType {
            name: "web".into(),
            component: component_file_name(component),
            args: Vec::new(),
        };
        Procfile {
            processes: BTreeMap::from([("web".to_string(), process)]),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ProcessType> {
        self.processes.get(name)
    }

    /// The process type names, for messages: `release, web, worker`.
    pub fn type_names(&self) -> String {
        self.processes
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Procfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.processes.values() {
            write!(f, "{}: {}", p.name, p.component)?;
            for arg in &p.args {
                write!(f, " {arg}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn valid_process_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 30
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `web` and `web.wasm` both name the slug file `web.wasm`.
fn component_file_name(component: &str) -> String {
    if component.ends_with(".wasm") {
        component.to_string()
    } else {
        format!("{component}.wasm")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_args() {
        let p = Procfile::parse("# app\n\nweb: web\nworker: worker.wasm --fast 3\n").unwrap();
        assert_eq!(p.processes.len(), 2);
        assert_eq!(p.get("web").unwrap().component, "web.wasm");
        let w = p.get("worker").unwrap();
        assert_eq!(w.component, "worker.wasm");
        assert_eq!(w.args, vec!["--fast", "3"]);
    }

    #[test]
    fn reports_bad_line_with_number() {
        let e = Procfile::parse("web: web\nthis is wrong\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("Procfile line 2:"), "{e}");
        let e = Procfile::parse("web:\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = Procfile::parse("w eb: x\n").unwrap_err();
        assert!(e.message.contains("invalid process type name"));
        let e = Procfile::parse("web: a\nweb: b\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Procfile::parse("web: ../etc/passwd\n").unwrap_err();
        assert!(e.message.contains("plain name"));
    }

    #[test]
    fn display_round_trips() {
        let p = Procfile::parse("web: web\nworker: worker a b\n").unwrap();
        assert_eq!(Procfile::parse(&p.to_string()).unwrap(), p);
    }
}
