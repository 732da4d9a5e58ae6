//! Mapping expressions: which ones the shards can compute themselves.
//!
//! A job file maps each target column to a SQL expression over the source
//! columns. [`classify`] recognizes the few simple forms that the engine
//! evaluates while decoding (a source column, a JSON field as text, a JSON field
//! with a cast) and returns [`MappingExpr::Sql`] for everything else. `Sql` is
//! always correct, only slower, so the rule here is: recognize a form only when
//! its meaning in PostgreSQL is certain.
//!
//! What that takes:
//! - identifiers as PostgreSQL reads them: a bare identifier is folded to lower
//!   case (ASCII only, as in UTF-8 databases) and must not be a reserved keyword
//!   (`user` is `current_user`, not a column); a double-quoted one is taken as is.
//!   Source columns are assumed to exist under exactly their declared names (the
//!   staging relation quotes them);
//! - operator precedence: `::` binds tighter than `->>`, so `value->>'a'::int`
//!   casts the key, not the field, and stays `Sql`;
//! - string literals with `''` escapes; any prefixed literal (`E'…'`, `U&'…'`),
//!   dollar quoting, comments or parameters give up;
//! - `#>>` path literals by PostgreSQL's array-literal rules (unquoted elements
//!   trimmed, `"…"` elements with backslash escapes); a `NULL` element, an empty
//!   path, nesting or dimensions give up;
//! - `->>'k'` treats `k` as an object key even when it looks like a number (on an
//!   array it yields NULL), while a `#>>` element that looks like a number indexes
//!   an array. The two spellings are kept apart by `path_operator`, and a chain
//!   like `col->'a'->>'b'` (the same as `col#>>'{a,b}'` only when no key looks
//!   like a number) is recognized only then;
//! - a cast to one type name: a word (optionally schema-qualified), one of
//!   PostgreSQL's multi-word names (`double precision`, `character varying`,
//!   `timestamp with time zone`…), an optional type modifier and array brackets.
//!   Anything after it (`::int + 1`, `::boolean or true`) gives up.

use std::collections::HashSet;

use super::MappingExpr;

/// The source columns mapping expressions may name, hashed: a job file's
/// mapping can have as many entries as its author likes, and each is
/// classified against the same set.
#[derive(Debug, Clone, Default)]
pub struct SourceColumns {
    all: HashSet<String>,
    json: HashSet<String>,
}

impl SourceColumns {
    /// `all` are the declared source column names; `json` those of them whose
    /// type is `json` or `jsonb`.
    pub fn new<'a>(all: impl IntoIterator<Item = &'a str>, json: impl IntoIterator<Item = &'a str>) -> SourceColumns {
        SourceColumns {
            all: all.into_iter().map(str::to_owned).collect(),
            json: json.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// Sorts a mapping expression into the forms the shards compute and `Sql`.
///
/// `source_columns` are the declared source column names; `json_columns` those
/// of them whose type is `json` or `jsonb`. The expression of a `Sql` result is
/// `expr` unchanged. To classify many expressions, build the [`SourceColumns`]
/// once and call [`classify_among`].
#[must_use]
pub fn classify(expr: &str, source_columns: &[String], json_columns: &[String]) -> MappingExpr {
    let columns =
        SourceColumns::new(source_columns.iter().map(String::as_str), json_columns.iter().map(String::as_str));
    classify_among(expr, &columns)
}

/// [`classify`] against columns hashed beforehand: linear in `expr`, whatever
/// the number of columns.
#[must_use]
pub fn classify_among(expr: &str, columns: &SourceColumns) -> MappingExpr {
    recognize(expr, &columns.all, &columns.json).unwrap_or_else(|| MappingExpr::Sql(expr.to_owned()))
}

fn recognize(expr: &str, source_columns: &HashSet<String>, json_columns: &HashSet<String>) -> Option<MappingExpr> {
    let tokens = lex(expr)?;
    if let [identifier @ Token::Identifier { .. }] = tokens.as_slice() {
        return resolve(identifier, source_columns).map(MappingExpr::SourceColumn);
    }
    let mut cursor = Cursor { tokens: &tokens, position: 0 };
    if cursor.peek() != Some(&Token::LeftParen) {
        let access = cursor.json_access(json_columns)?;
        cursor.end()?;
        return Some(MappingExpr::JsonText {
            column: access.column,
            path: access.path,
            path_operator: access.path_operator,
        });
    }
    cursor.expect(&Token::LeftParen)?;
    let access = cursor.json_access(json_columns)?;
    cursor.expect(&Token::RightParen)?;
    if cursor.peek().is_none() {
        return Some(MappingExpr::JsonText {
            column: access.column,
            path: access.path,
            path_operator: access.path_operator,
        });
    }
    cursor.expect(&Token::Cast)?;
    let cast = cursor.type_name()?;
    cursor.end()?;
    Some(MappingExpr::JsonCast { column: access.column, path: access.path, path_operator: access.path_operator, cast })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `name` is folded to lower case unless `quoted`.
    Identifier {
        name: String,
        quoted: bool,
    },
    /// A plain `'…'` literal, unescaped.
    String(String),
    /// A run of operator characters (`->>`, `#>>`, `+`…).
    Operator(String),
    /// Digits and what follows them (`9`, `1e5`, `.25`).
    Number(String),
    /// `::`
    Cast,
    LeftParen,
    RightParen,
    LeftBracket,
    RightBracket,
    Comma,
    Dot,
}

const OPERATOR_CHARS: &str = "+-*/<>=~!@#%^&|`?";

/// PostgreSQL's whitespace; other characters outside ASCII are identifier characters.
fn is_sql_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// PostgreSQL truncates longer identifiers; such names give up.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Splits `expr` into tokens; `None` for anything this module does not read
/// (comments, dollar quotes, parameters, unterminated quotes…).
fn lex(expr: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut position = 0;
    while let Some(&c) = chars.get(position) {
        if is_sql_space(c) {
            position += 1;
        } else if c == '"' || c == '\'' {
            let (text, next) = quoted(&chars, position, c)?;
            position = next;
            if c == '"' {
                if text.is_empty() {
                    return None;
                }
                tokens.push(Token::Identifier { name: text, quoted: true });
            } else {
                tokens.push(Token::String(text));
            }
        } else if c.is_alphabetic() || c == '_' || !c.is_ascii() {
            let start = position;
            while chars.get(position).is_some_and(|&c| c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()) {
                position += 1;
            }
            let name: String = chars[start..position].iter().map(char::to_ascii_lowercase).collect();
            tokens.push(Token::Identifier { name, quoted: false });
        } else if c.is_ascii_digit() || (c == '.' && chars.get(position + 1).is_some_and(char::is_ascii_digit)) {
            let start = position;
            while chars.get(position).is_some_and(|&c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
                position += 1;
            }
            tokens.push(Token::Number(chars[start..position].iter().collect()));
        } else if OPERATOR_CHARS.contains(c) {
            let start = position;
            while chars.get(position).is_some_and(|&c| OPERATOR_CHARS.contains(c)) {
                position += 1;
            }
            let operator: String = chars[start..position].iter().collect();
            if operator.contains("--") || operator.contains("/*") {
                return None;
            }
            tokens.push(Token::Operator(operator));
        } else {
            let token = match c {
                '(' => Token::LeftParen,
                ')' => Token::RightParen,
                '[' => Token::LeftBracket,
                ']' => Token::RightBracket,
                ',' => Token::Comma,
                '.' => Token::Dot,
                ':' if chars.get(position + 1) == Some(&':') => {
                    position += 1;
                    Token::Cast
                }
                _ => return None,
            };
            position += 1;
            tokens.push(token);
        }
    }
    Some(tokens)
}

/// The text of a quoted token starting at `start`, with doubled quotes undone,
/// and the position after it.
fn quoted(chars: &[char], start: usize, quote: char) -> Option<(String, usize)> {
    let mut text = String::new();
    let mut position = start + 1;
    loop {
        let c = *chars.get(position)?;
        position += 1;
        if c != quote {
            text.push(c);
        } else if chars.get(position) == Some(&quote) {
            text.push(quote);
            position += 1;
        } else {
            return Some((text, position));
        }
    }
}

/// Words that are never a column reference: PostgreSQL's reserved and
/// type/function-name keywords, and Greenplum's additions. A bare one gives up.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "decode",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "distributed",
    "do",
    "else",
    "end",
    "except",
    "exclude",
    "false",
    "fetch",
    "filter",
    "following",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "log",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "partition",
    "placing",
    "preceding",
    "primary",
    "range",
    "references",
    "returning",
    "right",
    "rows",
    "scatter",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "unbounded",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// The declared column an identifier token names, if any.
fn resolve(token: &Token, columns: &HashSet<String>) -> Option<String> {
    let Token::Identifier { name, quoted } = token else {
        return None;
    };
    if (!quoted && RESERVED.contains(&name.as_str())) || name.len() > MAX_IDENTIFIER_BYTES {
        return None;
    }
    columns.get(name.as_str()).cloned()
}

/// A recognized `col->>'k'`, `col#>>'{a,b}'` or chain of `->` / `#>`.
struct JsonAccess {
    column: String,
    path: Vec<String>,
    path_operator: bool,
}

struct Cursor<'a> {
    tokens: &'a [Token],
    position: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.position)?;
        self.position += 1;
        Some(token)
    }

    fn expect(&mut self, expected: &Token) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn end(&self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    fn bare_word(&mut self) -> Option<String> {
        match self.peek()? {
            Token::Identifier { name, quoted: false } => {
                let name = name.clone();
                self.position += 1;
                Some(name)
            }
            _ => None,
        }
    }

    fn next_is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Identifier { name, quoted: false }) if name == word)
    }

    /// A JSON column followed by `->` / `#>` steps and one final `->>` / `#>>`.
    fn json_access(&mut self, json_columns: &HashSet<String>) -> Option<JsonAccess> {
        let column = resolve(self.next()?, json_columns)?;
        let mut path = Vec::new();
        let mut steps = 0usize;
        let mut path_literal = false;
        let mut numeric_arrow_key = false;
        loop {
            let Token::Operator(operator) = self.next()? else {
                return None;
            };
            let operator = operator.clone();
            let Token::String(operand) = self.next()? else {
                return None;
            };
            match operator.as_str() {
                "->" | "->>" => {
                    numeric_arrow_key |= looks_like_integer(operand);
                    path.push(operand.clone());
                }
                "#>" | "#>>" => {
                    path.extend(text_array(operand)?);
                    path_literal = true;
                }
                _ => return None,
            }
            steps += 1;
            if operator.ends_with(">>") {
                break;
            }
        }
        if steps == 1 && !path_literal {
            // `col->>'k'`: an object key, whatever it looks like.
            return Some(JsonAccess { column, path, path_operator: false });
        }
        // Path semantics: in a chain, a `->` key that looks like a number would
        // index an array where `->` does not.
        if numeric_arrow_key {
            return None;
        }
        Some(JsonAccess { column, path, path_operator: true })
    }

    /// One type name, normalized: lower case, single spaces between words, no
    /// spaces around punctuation.
    fn type_name(&mut self) -> Option<String> {
        let first = self.bare_word()?;
        let mut name = first.clone();
        match first.as_str() {
            "double" => {
                self.bare_word().filter(|word| word == "precision")?;
                name.push_str(" precision");
            }
            "national" => {
                let second = self.bare_word().filter(|word| word == "character" || word == "char")?;
                name = format!("national {second}");
                self.optional_word(&mut name, "varying");
            }
            "character" | "char" | "bit" => self.optional_word(&mut name, "varying"),
            "timestamp" | "time" => {
                // The modifier comes before the time zone: `timestamp(3) with time zone`.
                self.type_modifier(&mut name)?;
                if self.next_is_word("with") || self.next_is_word("without") {
                    let with = self.bare_word()?;
                    self.bare_word().filter(|word| word == "time")?;
                    self.bare_word().filter(|word| word == "zone")?;
                    name = format!("{name} {with} time zone");
                }
                return self.array_brackets(name);
            }
            _ => {
                if self.peek() == Some(&Token::Dot) {
                    self.position += 1;
                    let second = self.bare_word()?;
                    name = format!("{first}.{second}");
                }
            }
        }
        self.type_modifier(&mut name)?;
        self.array_brackets(name)
    }

    /// Optional `[]` / `[n]` suffixes after a type name.
    fn array_brackets(&mut self, mut name: String) -> Option<String> {
        while self.peek() == Some(&Token::LeftBracket) {
            self.position += 1;
            name.push('[');
            if let Some(Token::Number(bound)) = self.peek() {
                if !bound.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                name.push_str(bound);
                self.position += 1;
            }
            self.expect(&Token::RightBracket)?;
            name.push(']');
        }
        Some(name)
    }

    fn optional_word(&mut self, name: &mut String, word: &str) {
        if self.next_is_word(word) {
            self.position += 1;
            name.push(' ');
            name.push_str(word);
        }
    }

    /// An optional `(n[, m…])`; `None` only for a malformed one.
    fn type_modifier(&mut self, name: &mut String) -> Option<()> {
        if self.peek() != Some(&Token::LeftParen) {
            return Some(());
        }
        self.position += 1;
        let mut numbers = Vec::new();
        loop {
            let Token::Number(number) = self.next()? else {
                return None;
            };
            if !number.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            numbers.push(number.clone());
            match self.next()? {
                Token::Comma => {}
                Token::RightParen => break,
                _ => return None,
            }
        }
        name.push_str(&format!("({})", numbers.join(",")));
        Some(())
    }
}

/// Whether PostgreSQL's path operators would read `key` as an array index
/// (generously: anything made of signs, digits and blanks with a digit).
fn looks_like_integer(key: &str) -> bool {
    key.chars().any(|c| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '+' || c.is_whitespace())
}

/// The elements of a one-dimensional `text[]` literal (`{a,"b c"}`), by
/// PostgreSQL's array input rules; `None` when unsure or empty.
fn text_array(literal: &str) -> Option<Vec<String>> {
    let is_space = is_sql_space;
    let inner = literal.trim_matches(is_space).strip_prefix('{')?.strip_suffix('}')?;
    let chars: Vec<char> = inner.chars().collect();
    let mut elements = Vec::new();
    let mut position = 0;
    loop {
        while chars.get(position).is_some_and(|&c| is_space(c)) {
            position += 1;
        }
        let mut element = String::new();
        if chars.get(position) == Some(&'"') {
            position += 1;
            loop {
                match *chars.get(position)? {
                    '"' => break,
                    '\\' => {
                        position += 1;
                        element.push(*chars.get(position)?);
                    }
                    c => element.push(c),
                }
                position += 1;
            }
            position += 1;
            while chars.get(position).is_some_and(|&c| is_space(c)) {
                position += 1;
            }
        } else {
            while let Some(&c) = chars.get(position) {
                if c == ',' {
                    break;
                }
                if matches!(c, '"' | '\\' | '{' | '}') {
                    return None;
                }
                element.push(c);
                position += 1;
            }
            let trimmed = element.trim_matches(is_space);
            if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("null") {
                return None;
            }
            element = trimmed.to_owned();
        }
        elements.push(element);
        match chars.get(position) {
            None => return Some(elements),
            Some(',') => position += 1,
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Classified against a JSON source whose one column is `value`.
    fn json(expr: &str) -> MappingExpr {
        classify(expr, &columns(&["value"]), &columns(&["value"]))
    }

    /// Classified against a CSV source with a `jsonb` column `doc`.
    fn csv(expr: &str) -> MappingExpr {
        classify(expr, &columns(&["cust_id", "month", "expense", "doc", "Mixed"]), &columns(&["doc"]))
    }

    fn text(column: &str, path: &[&str], path_operator: bool) -> MappingExpr {
        MappingExpr::JsonText { column: column.to_owned(), path: columns(path), path_operator }
    }

    fn cast(column: &str, path: &[&str], path_operator: bool, cast: &str) -> MappingExpr {
        MappingExpr::JsonCast { column: column.to_owned(), path: columns(path), path_operator, cast: cast.to_owned() }
    }

    fn sql(expr: &str) -> MappingExpr {
        MappingExpr::Sql(expr.to_owned())
    }

    #[test]
    fn source_columns() {
        assert_eq!(csv("cust_id"), MappingExpr::SourceColumn("cust_id".to_owned()));
        assert_eq!(csv("  Month "), MappingExpr::SourceColumn("month".to_owned()));
        assert_eq!(csv("\"expense\""), MappingExpr::SourceColumn("expense".to_owned()));
        assert_eq!(csv("\"Mixed\""), MappingExpr::SourceColumn("Mixed".to_owned()));
        assert_eq!(json("value"), MappingExpr::SourceColumn("value".to_owned()));
    }

    #[test]
    fn identifiers_that_are_not_source_columns() {
        // Folded to `mixed`, which is not declared.
        assert_eq!(csv("Mixed"), sql("Mixed"));
        // Quoted identifiers keep their case.
        assert_eq!(csv("\"Month\""), sql("\"Month\""));
        assert_eq!(csv("other"), sql("other"));
        assert_eq!(classify("user", &columns(&["user"]), &[]), sql("user"));
        assert_eq!(classify("\"user\"", &columns(&["user"]), &[]), MappingExpr::SourceColumn("user".to_owned()));
        assert_eq!(csv("cust_id.x"), sql("cust_id.x"));
    }

    #[test]
    fn json_text() {
        assert_eq!(json("value->>'name'"), text("value", &["name"], false));
        assert_eq!(json(" value ->> 'name' "), text("value", &["name"], false));
        assert_eq!(json("\"value\"->>'it''s'"), text("value", &["it's"], false));
        assert_eq!(json("(value->>'name')"), text("value", &["name"], false));
        assert_eq!(json("VALUE->>'Name'"), text("value", &["Name"], false));
        // An object key, even if it looks like a number.
        assert_eq!(json("value->>'0'"), text("value", &["0"], false));
        assert_eq!(csv("doc->>'k'"), text("doc", &["k"], false));
    }

    #[test]
    fn json_paths() {
        assert_eq!(json("value#>>'{a,b}'"), text("value", &["a", "b"], true));
        assert_eq!(json("value #>> '{ a , b c }'"), text("value", &["a", "b c"], true));
        assert_eq!(json("value#>>'{\"a b\",c}'"), text("value", &["a b", "c"], true));
        assert_eq!(json("value#>>'{\"a\\\"b\",\"\"}'"), text("value", &["a\"b", ""], true));
        assert_eq!(json("value#>>'{items,0,id}'"), text("value", &["items", "0", "id"], true));
        assert_eq!(json("value->'a'->>'b'"), text("value", &["a", "b"], true));
        assert_eq!(json("value->'a'#>>'{b,c}'"), text("value", &["a", "b", "c"], true));
    }

    #[test]
    fn json_casts() {
        assert_eq!(json("(value->>'name')::text"), cast("value", &["name"], false, "text"));
        assert_eq!(json("( value ->> 'name' ) :: TEXT"), cast("value", &["name"], false, "text"));
        assert_eq!(json("(value->>'qty')::int"), cast("value", &["qty"], false, "int"));
        assert_eq!(json("(value->>'p')::NUMERIC ( 9 , 2 )"), cast("value", &["p"], false, "numeric(9,2)"));
        assert_eq!(json("(value->>'p')::double   precision"), cast("value", &["p"], false, "double precision"));
        assert_eq!(json("(value->>'p')::character varying(20)"), cast("value", &["p"], false, "character varying(20)"));
        assert_eq!(
            json("(value#>>'{a,t}')::timestamp(3) WITH time zone"),
            cast("value", &["a", "t"], true, "timestamp(3) with time zone")
        );
        assert_eq!(json("(value->>'p')::pg_catalog.int4"), cast("value", &["p"], false, "pg_catalog.int4"));
        assert_eq!(json("(value->>'tags')::text[]"), cast("value", &["tags"], false, "text[]"));
    }

    #[test]
    fn everything_else_is_sql() {
        for expr in [
            "expense * .25",
            "(value->>'a')::int + 1",
            "value->'a'",
            "lower(value->>'a')",
            "value->>'a'::int",
            "(value->>'a')::int::text",
            "(value->>'a')::boolean or true",
            "(value->>'a')::date is null",
            "(value->>'a')::interval day",
            "(value->>'a')::\"MyType\"",
            "value->>E'a'",
            "value->>$1",
            "value->>'a' -- comment",
            "value->>0",
            "value->>'a' 'b'",
            "value->'0'->>'a'",
            "value#>>'{}'",
            "value#>>'{a,NULL}'",
            "value#>>'{a,{b}}'",
            "value#>>'[1:1]={a}'",
            "value#>>'{a,,b}'",
            "other->>'a'",
            "doc->>'a'",
            "cust_id->>'a'",
            "((value->>'a'))::int",
            "CAST(value->>'a' AS int)",
            "'value'",
            "now()",
            "current_date",
            "",
            "\"\"",
            "'unterminated",
        ] {
            let source = if expr.starts_with("cust_id") { csv(expr) } else { json(expr) };
            assert_eq!(source, sql(expr), "{expr}");
        }
    }

    #[test]
    fn array_literals() {
        assert_eq!(text_array("{a,b}"), Some(columns(&["a", "b"])));
        assert_eq!(text_array(" { a b , \"c,d\" } "), Some(columns(&["a b", "c,d"])));
        assert_eq!(text_array("{\"null\"}"), Some(columns(&["null"])));
        assert_eq!(text_array("{a\\,b}"), None);
        assert_eq!(text_array("{\"a\"b}"), None);
        assert_eq!(text_array("a,b"), None);
    }
}
