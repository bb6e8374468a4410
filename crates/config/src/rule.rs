//! The `instance = "..."` rule of a route, read into a typed value.

/// How a route derives the instance key from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceRule {
    /// One instance for every request.
    Name(String),
    /// The n-th path segment (from 1) after the pattern's fixed prefix.
    Path(usize),
    /// A request header's value.
    Header(String),
    /// A query parameter's value.
    Query(String),
    /// A cookie's value.
    Cookie(String),
    /// One of N keys (`"0"`..`"N-1"`) at random.
    Random(u32),
}

/// A header name as HTTP allows it (RFC 9110 5.1: a token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl InstanceRule {
    /// Reads `name:backend`, `path:1`, `header:X-Project`, `query:id`, `cookie:sid`, `random:4`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (kind, arg) = raw.split_once(':').ok_or_else(|| {
            format!("instance rule {raw:?} must look like \"name:backend\" or \"path:1\"")
        })?;
        if arg.is_empty() {
            return Err(format!("instance rule {raw:?} has nothing after the colon"));
        }
        match kind {
            "name" => Ok(Self::Name(arg.to_string())),
            "path" => match arg.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Self::Path(n)),
                _ => Err(format!("instance rule {raw:?}: path segments count from 1")),
            },
            "header" if is_token(arg) => Ok(Self::Header(arg.to_string())),
            "header" => Err(format!(
                "instance rule {raw:?}: {arg:?} is not a header name (letters, digits and \
                 !#$%&'*+-.^_`|~)"
            )),
            "query" => Ok(Self::Query(arg.to_string())),
            "cookie" => Ok(Self::Cookie(arg.to_string())),
            "random" => match arg.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Self::Random(n)),
                _ => Err(format!("instance rule {raw:?}: random needs a count of at least 1")),
            },
            other => Err(format!(
                "instance rule kind {other:?} is unknown (name, path, header, query, cookie, random)"
            )),
        }
    }

    /// Keys this rule can ever produce, when that set is fixed (`name:` and `random:`).
    pub fn fixed_keys(&self) -> Option<Vec<String>> {
        match self {
            Self::Name(key) => Some(vec![key.clone()]),
            Self::Random(n) => Some((0..*n).map(|i| i.to_string()).collect()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind() {
        assert_eq!(
            InstanceRule::parse("name:backend"),
            Ok(InstanceRule::Name("backend".into()))
        );
        assert_eq!(InstanceRule::parse("path:1"), Ok(InstanceRule::Path(1)));
        assert_eq!(
            InstanceRule::parse("header:X-P"),
            Ok(InstanceRule::Header("X-P".into()))
        );
        assert_eq!(
            InstanceRule::parse("query:id"),
            Ok(InstanceRule::Query("id".into()))
        );
        assert_eq!(
            InstanceRule::parse("cookie:sid"),
            Ok(InstanceRule::Cookie("sid".into()))
        );
        assert_eq!(InstanceRule::parse("random:3"), Ok(InstanceRule::Random(3)));
        assert!(InstanceRule::parse("path:0").is_err());
        // Found by the fuzz target `config`: such a name passed validation and `valet up`
        // panicked compiling the route.
        assert!(InstanceRule::parse("header:X127.0.0.1:8788-Tenant").is_err());
        assert!(InstanceRule::parse("header:").is_err());
        assert!(InstanceRule::parse("header:X Tenant").is_err());
        assert!(InstanceRule::parse("pathx").is_err());
        assert!(InstanceRule::parse("ip:1").is_err());
    }
}
