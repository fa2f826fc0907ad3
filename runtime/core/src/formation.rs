//! The formation: how many dynos of each process type an app runs (`web=2 worker=1`).

use crate::process::ProcessType;
use crate::procfile::Procfile;
use std::collections::BTreeMap;

/// Dynos per process type. Serialised as the plain map `{"web": 2, "worker": 1}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Formation(BTreeMap<ProcessType, u32>);

impl Formation {
    pub fn new() -> Formation {
        Formation::default()
    }

    /// The formation `heroku local` runs: one dyno of every process type but `release`.
    pub fn one_of_each(procfile: &Procfile) -> Formation {
        Formation(
            procfile
                .processes
                .keys()
                .filter(|t| !t.is_release())
                .map(|t| (t.clone(), 1))
                .collect(),
        )
    }

    /// Dynos of `process_type` (0 when absent).
    pub fn quantity(&self, process_type: impl AsRef<str>) -> u32 {
        self.0.get(process_type.as_ref()).copied().unwrap_or(0)
    }

    pub fn set(&mut self, process_type: ProcessType, quantity: u32) {
        self.0.insert(process_type, quantity);
    }

    /// What of this formation a release can run: its process types, minus `release`
    /// (which runs once per deploy, never as a dyno of the formation).
    pub fn runnable_in(&self, procfile: &Procfile) -> Formation {
        Formation(
            self.0
                .iter()
                .filter(|(t, _)| !t.is_release() && procfile.get(t).is_some())
                .map(|(t, n)| (t.clone(), *n))
                .collect(),
        )
    }

    /// This formation over every process type `procfile` runs as dynos (0 where it
    /// says none), as `ps:scale` shows it.
    pub fn every_type_in(&self, procfile: &Procfile) -> Formation {
        Formation(
            Formation::one_of_each(procfile)
                .0
                .into_keys()
                .map(|t| {
                    let n = self.quantity(&t);
                    (t, n)
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ProcessType, u32)> {
        self.0.iter().map(|(t, n)| (t, *n))
    }

    /// `web=2 worker=1`, for log lines.
    pub fn summary(&self) -> String {
        self.iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl FromIterator<(ProcessType, u32)> for Formation {
    fn from_iter<I: IntoIterator<Item = (ProcessType, u32)>>(iter: I) -> Formation {
        Formation(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Formation {
    type Item = (&'a ProcessType, &'a u32);
    type IntoIter = std::collections::btree_map::Iter<'a, ProcessType, u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Formation> for BTreeMap<ProcessType, u32> {
    fn from(f: Formation) -> Self {
        f.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_part_and_wire_form() {
        let procfile = Procfile::parse("web: web\nworker: w\nrelease: r\n").unwrap();
        let f: Formation = serde_json::from_str(r#"{"web":2,"release":1,"old":3}"#).unwrap();
        assert_eq!(f.runnable_in(&procfile).summary(), "web=2");
        assert_eq!(f.every_type_in(&procfile).summary(), "web=2 worker=0");
        assert_eq!((f.quantity("old"), f.quantity("worker")), (3, 0));
        assert_eq!(
            serde_json::to_string(&Formation::one_of_each(&procfile)).unwrap(),
            r#"{"web":1,"worker":1}"#
        );
    }
}
