//! `1 app`, `2 apps`: a number with its noun, for what the CLI and the host say.

/// `n` and `one`, made plural unless `n` is 1: `person` → `people`, a consonant's `y` →
/// `ies` (`add-on entry` → `add-on entries`), else `s` (enough for the nouns said here).
pub fn counted(n: usize, one: &str) -> String {
    if n == 1 {
        return format!("1 {one}");
    }
    let many = if let Some(stem) = one.strip_suffix("person") {
        format!("{stem}people")
    } else if let Some(stem) = one
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u']))
    {
        format!("{stem}ies")
    } else {
        format!("{one}s")
    };
    format!("{n} {many}")
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn nouns_are_counted() {
        assert_eq!(counted(1, "app"), "1 app");
        assert_eq!(counted(0, "app"), "0 apps");
        assert_eq!(counted(3, "person"), "3 people");
        assert_eq!(counted(2, "add-on entry"), "2 add-on entries");
        assert_eq!(counted(2, "key"), "2 keys");
        assert_eq!(counted(1, "person"), "1 person");
    }
}
