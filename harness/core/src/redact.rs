//! Keeping credentials out of what the harness shows: tools' output, errors, reports and logs.
//!
//! Whatever a tool prints enters the harness through `meshmig_backends::Output` and the errors
//! built from a command's stderr; both pass through [`scrub`], and so do the rendered and JSON
//! reports. Scrubbed are: Google OAuth access tokens (`ya29.…`), PEM private keys (also as they
//! appear JSON-escaped inside a service-account key file), service-account key ids, bearer
//! tokens, and the values of this process's environment variables whose names say they hold a
//! secret (`…TOKEN…`, `…SECRET…`, `…PASSWORD…`, `…PRIVATE_KEY…`, `…CREDENTIALS…` with an inline
//! value).

use std::borrow::Cow;

/// What a scrubbed secret is replaced by.
pub const REDACTED: &str = "[REDACTED]";

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

/// Replaces every run of token characters that follows `prefix` (the prefix is kept).
fn after_prefix(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i + prefix.len()]);
        let after = &rest[i + prefix.len()..];
        let n = after
            .char_indices()
            .find(|(_, c)| !is_token_char(*c))
            .map_or(after.len(), |(j, _)| j);
        if n > 0 {
            out.push_str(REDACTED);
        }
        rest = &after[n..];
    }
    out.push_str(rest);
    out
}

/// Replaces everything from a `-----BEGIN … PRIVATE KEY-----` to its `-----END … PRIVATE
/// KEY-----` (or to the end of the text).
fn private_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("-----BEGIN") {
        let head = &rest[i..];
        let header_end = head[10..].find("-----").map(|j| j + 15);
        let is_private = header_end.is_some_and(|e| head[..e].contains("PRIVATE KEY"));
        if !is_private {
            out.push_str(&rest[..i + 10]);
            rest = &rest[i + 10..];
            continue;
        }
        out.push_str(&rest[..i]);
        out.push_str(REDACTED);
        rest = match head.find("-----END") {
            Some(e) => {
                let tail = &head[e + 8..];
                match tail.find("-----") {
                    Some(k) => &tail[k + 5..],
                    None => "",
                }
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Whether an environment variable's name says it holds a secret.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PRIVATE_KEY",
        "CREDENTIALS",
        "API_KEY",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `text` with the credentials it holds replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut s = Cow::Borrowed(text);
    for (name, value) in std::env::vars() {
        // A path to a key file is not the secret; its contents are caught by the rules below.
        if secret_name(&name) && value.len() >= 8 && !value.starts_with('/') && s.contains(&value) {
            s = Cow::Owned(s.replace(&value, REDACTED));
        }
    }
    if s.contains("ya29.") {
        s = Cow::Owned(after_prefix(&s, "ya29."));
    }
    if s.contains("Bearer ") {
        s = Cow::Owned(after_prefix(&s, "Bearer "));
    }
    if s.contains("-----BEGIN") {
        s = Cow::Owned(private_keys(&s));
    }
    for field in ["\"private_key_id\": \"", "\"private_key_id\":\""] {
        if s.contains(field) {
            s = Cow::Owned(after_prefix(&s, field));
        }
    }
    s
}

/// [`scrub`], owned.
pub fn scrubbed(text: impl AsRef<str>) -> String {
    scrub(text.as_ref()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_keys_are_replaced_and_the_rest_kept() {
        let key = "{\n  \"type\": \"service_account\",\n  \"private_key_id\": \"0123456789abcdef0123456789abcdef01234567\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n\",\n  \"client_email\": \"ci@demo.iam.gserviceaccount.com\"\n}";
        let s = scrubbed(format!(
            "token ya29.a0AfH6SMBx-y_z.9 and Authorization: Bearer abc.def-ghi\n{key}"
        ));
        assert!(!s.contains("a0AfH6SMBx"), "{s}");
        assert!(!s.contains("abc.def-ghi"), "{s}");
        assert!(!s.contains("MIIEvQIBADAN"), "{s}");
        assert!(!s.contains("0123456789abcdef"), "{s}");
        assert!(s.contains("ci@demo.iam.gserviceaccount.com"), "{s}");
        assert!(s.contains("token ya29.[REDACTED] and"), "{s}");
        // A public certificate is not a secret.
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(scrubbed(cert), cert);
    }
}
