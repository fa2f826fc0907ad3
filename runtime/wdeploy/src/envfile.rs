//! `.env` files: `KEY=VALUE` lines that become config vars in `wdeploy dev`, and what
//! `wdeploy config --shell` writes, so `wdeploy config --shell > .env` runs an app locally
//! with its host's config vars, every value as it was.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads an env file. Blank lines and `#` comments are skipped, as is an `export `
/// prefix.
pub fn load(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading env file {}", path.display()))?;
    parse(&text).with_context(|| format!("in env file {}", path.display()))
}

/// Parses `KEY=VALUE` lines. A value that starts with a quote is read as a shell reads
/// it: `'…'` literally, across lines too; `"…"` with `\"`, `\\`, `\$` and `` \` `` for
/// those characters; `\x` outside quotes for `x`; so `'it'\''s'` is `it's`. Any other
/// value is the rest of the line, trimmed, backslashes and all (`C:\dir` stays so).
pub fn parse(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, raw)) = lines.next() {
        let number = index + 1;
        // Trimmed at the end only where the value is plain: a quoted one keeps its spaces.
        let line = raw.trim_start();
        if line.trim_end().is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!(
                "line {number}: expected KEY=VALUE, found `{}`",
                line.trim_end()
            );
        };
        let key = key.trim();
        if !valid_key(key) {
            bail!(
                "line {number}: `{key}` is not a valid config var name (letters, digits and `_`, not starting with a digit)"
            );
        }
        let value = value.trim_start();
        let value = if value.starts_with(['\'', '"']) {
            // A quoted value may go on over the next lines, up to its closing quote.
            let mut words = value.to_string();
            loop {
                match unquote(&words) {
                    Ok(value) => break value,
                    Err(Unclosed) => match lines.next() {
                        Some((_, more)) => {
                            words.push('\n');
                            words.push_str(more);
                        }
                        None => bail!("line {number}: the quote of {key}'s value never closes"),
                    },
                }
            }
        } else {
            value.trim_end().to_string()
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

/// A quote still open at the end of the text.
struct Unclosed;

/// Reads `words` as a shell reads one word: quotes removed, escapes applied. Text after
/// the word's end (whitespace, then a `# comment`) is left out.
fn unquote(words: &str) -> Result<String, Unclosed> {
    let mut value = String::new();
    let mut chars = words.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next().ok_or(Unclosed)? {
                    '\'' => break,
                    c => value.push(c),
                }
            },
            '"' => loop {
                match chars.next().ok_or(Unclosed)? {
                    '"' => break,
                    '\\' => match chars.next().ok_or(Unclosed)? {
                        c @ ('"' | '\\' | '$' | '`') => value.push(c),
                        '\n' => {}
                        c => {
                            value.push('\\');
                            value.push(c);
                        }
                    },
                    c => value.push(c),
                }
            },
            '\\' => value.extend(chars.next()),
            c if c.is_whitespace() => break,
            c => value.push(c),
        }
    }
    Ok(value)
}

/// `value` as one shell word that [`parse`] and a POSIX shell both read back as it was:
/// as it is when it holds only characters no shell treats specially, else in single
/// quotes, each `'` written `'\''`.
pub fn quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:/@%+=".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
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
        let vars = parse("# c\nA=1\nexport B = \"two words\"\nC='x=y'\n\nD=C:\\dir\\x\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x=y");
        assert_eq!(vars["D"], r"C:\dir\x");
        let err = parse("A=1\nnot a var\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse("1A=x").is_err());
        let err = parse("A='open\nB=1\n").unwrap_err().to_string();
        assert_eq!(err, "line 1: the quote of A's value never closes");
    }

    #[test]
    fn quoted_values_read_as_a_shell_reads_them() {
        let vars =
            parse("A='it'\\''s'\nB=\"say \\\"hi\\\" for \\$5\"\nC='first\nsecond'\nD='x' # note\n")
                .unwrap();
        assert_eq!(vars["A"], "it's");
        assert_eq!(vars["B"], "say \"hi\" for $5");
        assert_eq!(vars["C"], "first\nsecond");
        assert_eq!(vars["D"], "x");
    }

    /// What `config --shell` writes, `dev` reads back as it was, and so does `sh`.
    #[test]
    fn quoted_values_come_back_as_they_were() {
        let values = [
            "plain",
            "postgres://u:p@db.example.com:5432/app?sslmode=require",
            "",
            "two words",
            "it's",
            "'",
            "$HOME `id` \\ \"quoted\" ; & | * ? ~ #",
            "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
            "trailing space \nand more ",
            "ünïcode ✓",
        ];
        let file: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("K{i}={}\n", quote(v)))
            .collect();
        let vars = parse(&file).unwrap();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(vars[&format!("K{i}")], *v, "{file}");
        }
        // A POSIX shell reads the same file to the same values.
        let script = format!(
            "{file}printf '%s\\0' {}",
            (0..values.len())
                .map(|i| format!("\"$K{i}\""))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("run sh");
        let read: Vec<&str> = std::str::from_utf8(&out.stdout)
            .expect("UTF-8")
            .split_terminator('\0')
            .collect();
        assert_eq!(read, values);
    }
}
