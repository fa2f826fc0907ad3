//! The Procfile: `name: component [args…]` lines naming the app's process types.

use crate::process::ProcessType;
use std::collections::BTreeMap;
use std::fmt;

/// One line of the Procfile: which slug component runs a process type, with which
/// arguments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Process {
    pub name: ProcessType,
    /// File name of the component inside the slug, always ending in `.wasm`.
    pub component: String,
    pub args: Vec<String>,
}

impl Process {
    /// `web` is served over HTTP; every other type runs `wasi:cli/run`.
    pub fn is_web(&self) -> bool {
        self.name.is_web()
    }
    /// `release` runs once before a deploy, never as part of the formation.
    pub fn is_release(&self) -> bool {
        self.name.is_release()
    }
}

/// The parsed Procfile, processes keyed by type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Procfile {
    pub processes: BTreeMap<ProcessType, Process>,
}

/// A Procfile line that could not be understood (`line` is 1-based), or a Procfile that
/// does not fit its slug as a whole (`line` 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match line { 0 => format!("Procfile: {message}"), n => format!("Procfile line {n}: {message}") })]
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
            let name: ProcessType = name.trim().parse().map_err(|e| err(format!("{e}")))?;
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
            let process = Process {
                name: name.clone(),
                component,
                args: words.map(str::to_string).collect(),
            };
            if processes.insert(name.clone(), process).is_some() {
                return Err(err(format!("process type `{name}` is defined twice")));
            }
        }
        Ok(Procfile { processes })
    }

    /// The Procfile of an app without one: its only component serves `web`.
    pub fn single_web(component: &str) -> Procfile {
        let process = Process {
            name: ProcessType::web(),
            component: component_file_name(component),
            args: Vec::new(),
        };
        Procfile {
            processes: BTreeMap::from([(ProcessType::web(), process)]),
        }
    }

    pub fn get(&self, name: impl AsRef<str>) -> Option<&Process> {
        self.processes.get(name.as_ref())
    }

    /// Every process type must name a component among `components` (file names): a
    /// Procfile naming a component the slug lacks is refused before anything runs.
    pub fn check_components<'a>(
        &self,
        components: impl Iterator<Item = &'a String> + Clone,
    ) -> Result<(), ProcfileError> {
        let whole = |message: String| ProcfileError { line: 0, message };
        if self.processes.is_empty() {
            return Err(whole("no process types are defined".into()));
        }
        for p in self.processes.values() {
            if !components.clone().any(|c| *c == p.component) {
                let have: Vec<_> = components.clone().cloned().collect();
                return Err(whole(format!(
                    "process type `{}` runs component `{}`, which the slug lacks (it has: {})",
                    p.name,
                    p.component,
                    have.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The process type names, for messages: `release, web, worker`.
    pub fn type_names(&self) -> String {
        self.processes
            .keys()
            .map(ProcessType::as_str)
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
