//! `.dockerignore`: which files of a build context are left out of what is sent to Docker.
//!
//! Docker's rules (docs.docker.com, "Dockerignore files"): one pattern a line; `#` starts a
//! comment line; blank lines are skipped; a leading `/` (or `./`) is dropped — patterns are
//! relative to the context's root either way; `*` matches any run of characters within one
//! path segment, `?` one character, `[...]` a class (`\` escapes); `**` as a whole segment
//! matches any number of segments, none included; `!` makes an exception that puts back what an
//! earlier line left out; the last line that matches a path decides. A pattern that matches a
//! directory leaves out everything under it. The Dockerfile and `.dockerignore` are sent
//! whatever the file says, as `docker build` does.
//!
//! Written here rather than taken from a crate: the `ignore` crate implements `.gitignore`,
//! whose rules differ (unanchored patterns, no `**` requirement), and no maintained crate of the
//! Docker rules exists.

/// The parsed lines of a `.dockerignore`.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
    exception: bool,
}

impl Rules {
    /// Parses a `.dockerignore` file's text.
    pub fn parse(text: &str) -> Rules {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            // Docker cleans each pattern like a path: no empty, `.` segments or leading `/`.
            let mut segments: Vec<String> = Vec::new();
            for seg in pat.split('/') {
                match seg {
                    "" | "." => {}
                    ".." => {
                        segments.pop();
                    }
                    s => segments.push(s.to_string()),
                }
            }
            if segments.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                segments,
                exception,
            });
        }
        Rules { patterns }
    }

    /// Whether any line is an exception (then a left-out directory must still be walked: an
    /// exception may put back something inside it).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether the path `rel` (relative to the context, `/`-separated) is left out.
    pub fn excluded(&self, rel: &str) -> bool {
        let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        let mut out = false;
        for p in &self.patterns {
            // A pattern matching the path or one of its parent directories covers it.
            let hit = (1..=segs.len()).any(|n| match_segments(&p.segments, &segs[..n]));
            if hit {
                out = !p.exception;
            }
        }
        out
    }
}

fn match_segments(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((seg, path_rest)) => {
                glob(first.as_bytes(), seg.as_bytes()) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// Go's `filepath.Match` on one segment: `*`, `?`, `[...]` (with `^` or `!` negation and
/// ranges), `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some((&c, s_rest)) = s.split_first() else {
                return false;
            };
            let mut i = 1;
            let negate = matches!(p.get(i), Some(b'^') | Some(b'!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&b) = p.get(i) else {
                    return false; // unclosed class: matches nothing, as Go reports a bad pattern
                };
                if b == b']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let lo = if b == b'\\' {
                    i += 1;
                    match p.get(i) {
                        Some(&e) => e,
                        None => return false,
                    }
                } else {
                    b
                };
                i += 1;
                let hi = if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&x| x != b']') {
                    i += 1;
                    let h = if p[i] == b'\\' {
                        i += 1;
                        match p.get(i) {
                            Some(&e) => e,
                            None => return false,
                        }
                    } else {
                        p[i]
                    };
                    i += 1;
                    h
                } else {
                    lo
                };
                if lo <= c && c <= hi {
                    matched = true;
                }
            }
            matched != negate && glob(&p[i..], s_rest)
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_left_out_as_docker_leaves_them_out() {
        // (.dockerignore, path, left out?)
        let cases: &[(&str, &str, bool)] = &[
            ("secret.txt", "secret.txt", true),
            ("secret.txt", "sub/secret.txt", false),
            ("/secret.txt", "secret.txt", true),
            ("./secret.txt", "secret.txt", true),
            ("*.log", "app.log", true),
            ("*.log", "logs/app.log", false),
            ("*/*.log", "logs/app.log", true),
            ("**/*.log", "app.log", true),
            ("**/*.log", "a/b/c/app.log", true),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/**/z", "b/z", false),
            ("node_modules", "node_modules/x/y.js", true),
            ("temp?", "temp1", true),
            ("temp?", "temp12", false),
            ("file[0-9].txt", "file7.txt", true),
            ("file[0-9].txt", "filex.txt", false),
            ("file[^0-9].txt", "filex.txt", true),
            ("\\*.txt", "*.txt", true),
            ("\\*.txt", "a.txt", false),
            ("# comment\n\n  spaced.txt  ", "spaced.txt", true),
            ("# comment", "# comment", false),
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("!README.md\n*.md", "README.md", true),
            ("docs\n!docs/keep.txt", "docs/keep.txt", false),
            ("docs\n!docs/keep.txt", "docs/drop.txt", true),
            ("a/../b", "b", true),
            ("", "anything", false),
        ];
        for (rules, path, want) in cases {
            assert_eq!(
                Rules::parse(rules).excluded(path),
                *want,
                "{rules:?} on {path:?}"
            );
        }
    }

    #[test]
    fn exceptions_are_noticed() {
        assert!(!Rules::parse("a\nb").has_exceptions());
        assert!(Rules::parse("a\n!a/b").has_exceptions());
    }
}
