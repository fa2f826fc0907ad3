//! The conversions every validated string type of this crate shares.

/// Implements, for a `struct $ty(String)` with `fn check(text: &str) -> Result<(), $err>`:
/// parsing (`FromStr`, `TryFrom<String>`, so serde's `try_from` validates), `From<$ty>
/// for String`, `AsRef<str>`, `Display` (the text itself) and `Debug` (quoted).
macro_rules! validated_string {
    ($ty:ident, $err:ty) => {
        impl std::str::FromStr for $ty {
            type Err = $err;
            fn from_str(text: &str) -> Result<$ty, $err> {
                $ty::check(text)?;
                Ok($ty(text.to_string()))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $err;
            fn try_from(text: String) -> Result<$ty, $err> {
                $ty::check(&text)?;
                Ok($ty(text))
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

pub(crate) use validated_string;
