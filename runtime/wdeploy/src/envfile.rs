//! `.env` files: `KEY=VALUE` lines that become config vars in `wdeploy dev`.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads an env file. Blank lines and `#` comments are skipped; an optional `export `
/// prefix and matching quotes around the value are removed.
pub fn load(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading env file {}", path.display()))?;
    parse(&text).with_context(|| format!("in env file {}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE, found `{line}`", index + 1);
        };
        let key = key.trim();
        if !valid_key(key) {
            bail!(
                "line {}: `{key}` is not a valid config var name (letters, digits and `_`, not starting with a digit)",
                index + 1
            );
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.to_string(), value.to_string());
    }
    Ok(vars)
}

pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_lines() {
        let vars = parse("# c\nA=1\nexport B = \"two words\"\nC='x=y'\n\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x=y");
        let err = parse("A=1\nnot a var\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse("1A=x").is_err());
    }
}
