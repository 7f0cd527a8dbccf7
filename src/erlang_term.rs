//! A reader for the subset of Erlang term syntax used by `.app.src`,
//! `rebar.config` and `sys.config` files.
//!
//! The book configures the signaling server through Erlang files; rtcserver
//! keeps accepting those files so that the book's instructions still work,
//! without requiring an Erlang installation.  [`consult`] behaves like
//! `file:consult/1`: the input is a sequence of terms, each ended by a `.`.
//!
//! Supported: atoms (bare and `'quoted'`), integers (`-5`, `16#FF`, `1_000`,
//! `$c`), floats (`1.5`, `2.0e-3`), strings with the usual escapes, adjacent
//! string concatenation (`"ab" "cd"`), binaries made of string and integer
//! segments (`<<"text">>`, `<<"é"/utf8>>`, `<<1,2,3>>`, `<<>>`), tuples,
//! proper lists and `%` comments.
//!
//! Deliberately unsupported (reported as errors, never silently misread):
//! improper lists (`[H | T]`), maps, records, variables, bit-syntax sizes, and
//! arithmetic expressions.
//!
//! Unlike Erlang, a string is kept as [`Term::String`] rather than a list of
//! character codes, because every consumer of these files wants text.

use std::fmt;

/// An Erlang term as read from a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Atom(String),
    Integer(i64),
    Float(f64),
    /// A `"..."` literal (Erlang would see a list of character codes).
    String(String),
    Binary(Vec<u8>),
    Tuple(Vec<Term>),
    List(Vec<Term>),
}

impl Term {
    /// The name of the term's type, for error messages ("expected an integer,
    /// found a string").
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match self {
            Term::Atom(_) => "atom",
            Term::Integer(_) => "integer",
            Term::Float(_) => "float",
            Term::String(_) => "string",
            Term::Binary(_) => "binary",
            Term::Tuple(_) => "tuple",
            Term::List(_) => "list",
        }
    }

    #[must_use]
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Term::Integer(i) => Some(*i),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(items) => Some(items),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_list(&self) -> Option<&[Term]> {
        match self {
            Term::List(items) => Some(items),
            _ => None,
        }
    }

    /// `{Key, Value}` with an atom key, the shape of every option in the
    /// files this module reads.
    #[must_use]
    pub fn as_pair(&self) -> Option<(&str, &Term)> {
        match self.as_tuple()? {
            [Term::Atom(k), v] => Some((k, v)),
            _ => None,
        }
    }
}

/// Words that Erlang's parser refuses as bare atoms; they must be quoted.
const RESERVED_WORDS: &[&str] = &[
    "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
    "catch", "cond", "div", "else", "end", "fun", "if", "let", "maybe", "not", "of", "or",
    "orelse", "receive", "rem", "try", "when", "xor",
];

fn atom_needs_quotes(a: &str) -> bool {
    let mut chars = a.chars();
    match chars.next() {
        Some(c) if is_atom_start(c) => {}
        _ => return true,
    }
    !chars.all(is_name_char) || RESERVED_WORDS.contains(&a)
}

fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str, quote: char) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{{{:X}}}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    Ok(())
}

/// Writes the term back in Erlang syntax, so error messages show values the
/// way the user typed them.
impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Atom(a) if atom_needs_quotes(a) => {
                f.write_str("'")?;
                write_escaped(f, a, '\'')?;
                f.write_str("'")
            }
            Term::Atom(a) => f.write_str(a),
            Term::Integer(i) => write!(f, "{i}"),
            Term::Float(x) => {
                // Erlang insists on a fraction before the exponent ("1.0e20").
                let s = format!("{x:?}");
                match s.find('e') {
                    Some(i) if !s[..i].contains('.') => write!(f, "{}.0{}", &s[..i], &s[i..]),
                    _ => f.write_str(&s),
                }
            }
            Term::String(s) => {
                f.write_str("\"")?;
                write_escaped(f, s, '"')?;
                f.write_str("\"")
            }
            Term::Binary(bytes) => match std::str::from_utf8(bytes) {
                Ok(s)
                    if !s
                        .chars()
                        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) =>
                {
                    f.write_str("<<\"")?;
                    write_escaped(f, s, '"')?;
                    f.write_str(if s.is_ascii() { "\">>" } else { "\"/utf8>>" })
                }
                _ => {
                    f.write_str("<<")?;
                    for (i, b) in bytes.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{b}")?;
                    }
                    f.write_str(">>")
                }
            },
            Term::Tuple(items) => write_seq(f, "{", items, "}"),
            Term::List(items) => write_seq(f, "[", items, "]"),
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Term], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{t}")?;
    }
    f.write_str(close)
}

/// A syntax error, with the 1-based line and column (counted in characters)
/// where it was detected.
#[derive(Debug, Clone, PartialEq)]
pub struct TermError {
    pub line: usize,
    pub column: usize,
    pub kind: TermErrorKind,
}

/// What went wrong; the `Display` text is meant for the person editing the file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TermErrorKind {
    /// The grammar wanted `expected` here but the input had `found`.
    /// `opened_at` points at the unclosed bracket when the input ran out.
    Expected {
        expected: &'static str,
        found: String,
        opened_at: Option<(usize, usize)>,
    },
    /// A `"` string with no closing quote; the position is the opening quote.
    UnterminatedString,
    /// A `'` atom with no closing quote; the position is the opening quote.
    UnterminatedAtom,
    /// A malformed or out-of-range integer literal.
    BadInteger(String),
    /// A malformed float literal.
    BadFloat(String),
    /// A malformed escape sequence or `$` character literal.
    BadEscape(String),
    /// A binary segment whose value cannot be stored as asked.
    BadBinary(String),
    /// A character that cannot start any token.
    UnexpectedChar(char),
    /// Variables have no value in a consulted file.
    Variable(String),
    /// A reserved word used as a bare atom (Erlang requires quotes).
    ReservedWord(String),
    /// Valid Erlang that this reader deliberately does not handle.
    Unsupported(&'static str),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Nesting limit, so that hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 200;

impl fmt::Display for TermErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TermErrorKind::Expected { expected, found, opened_at } => {
                write!(f, "expected {expected}, found {found}")?;
                if let Some((l, c)) = opened_at {
                    write!(f, " (the bracket opened at line {l}, column {c} is never closed)")?;
                }
                Ok(())
            }
            TermErrorKind::UnterminatedString => {
                f.write_str("unterminated string (expected a closing '\"')")
            }
            TermErrorKind::UnterminatedAtom => {
                f.write_str("unterminated quoted atom (expected a closing ''')")
            }
            TermErrorKind::BadInteger(why) => write!(f, "bad integer: {why}"),
            TermErrorKind::BadFloat(why) => write!(f, "bad float: {why}"),
            TermErrorKind::BadEscape(why) => write!(f, "bad character escape: {why}"),
            TermErrorKind::BadBinary(why) => write!(f, "bad binary segment: {why}"),
            TermErrorKind::UnexpectedChar(c) => write!(f, "unexpected character {c:?}"),
            TermErrorKind::Variable(v) => write!(
                f,
                "variable '{v}' is not allowed in a configuration file (quote it to make an atom: '{v}')"
            ),
            TermErrorKind::ReservedWord(w) => {
                write!(f, "'{w}' is a reserved word; write it as a quoted atom '{w}'")
            }
            TermErrorKind::Unsupported(what) => write!(f, "{what} are not supported here"),
            TermErrorKind::TooDeep => write!(f, "terms nested more than {MAX_DEPTH} levels deep"),
        }
    }
}

impl fmt::Display for TermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.kind
        )
    }
}

impl std::error::Error for TermError {}

/// Reads a sequence of `.`-terminated terms, like Erlang's `file:consult/1`.
/// An empty input (or one holding only comments) gives an empty vector.
///
/// # Errors
/// The first syntax error, with its line and column.
pub fn consult(text: &str) -> Result<Vec<Term>, TermError> {
    let mut p = Parser::new(text);
    let mut terms = Vec::new();
    loop {
        if p.peek()?.tok == Tok::Eof {
            return Ok(terms);
        }
        terms.push(p.term(0)?);
        let end = p.last_end;
        let t = p.next()?;
        match t.tok {
            Tok::End => {}
            // Point just past the term: the end of the file may be many
            // blank lines further down, far from where the '.' belongs.
            Tok::Eof => return Err(expected_at(end, "'.' after the term", &t.tok, None)),
            _ => {
                return Err(expected_at(
                    (t.line, t.col),
                    "'.' after the term",
                    &t.tok,
                    None,
                ))
            }
        }
    }
}

/// Reads exactly one term; the terminating `.` is optional.
///
/// # Errors
/// The first syntax error, or anything but whitespace and comments after
/// the term.
pub fn parse_term(text: &str) -> Result<Term, TermError> {
    let mut p = Parser::new(text);
    let term = p.term(0)?;
    let t = p.next()?;
    let t = if t.tok == Tok::End { p.next()? } else { t };
    match t.tok {
        Tok::Eof => Ok(term),
        _ => Err(expected_at(
            (t.line, t.col),
            "end of input after the term",
            &t.tok,
            None,
        )),
    }
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    BinOpen,
    BinClose,
    Slash,
    Colon,
    Minus,
    Plus,
    Hash,
    /// The `.` that ends a term: a period followed by whitespace, `%` or EOF.
    End,
    Atom(String),
    Var(String),
    /// The magnitude; the sign is a separate token, and the range check
    /// happens once the sign is known so that `-9223372036854775808` works.
    Int(u64),
    Float(f64),
    Str(String),
    Eof,
}

fn describe(tok: &Tok) -> String {
    fn clip(s: &str) -> String {
        if s.chars().count() > 24 {
            format!("{}...", s.chars().take(24).collect::<String>())
        } else {
            s.to_string()
        }
    }
    match tok {
        Tok::LBrace => "'{'".into(),
        Tok::RBrace => "'}'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::Pipe => "'|'".into(),
        Tok::BinOpen => "'<<'".into(),
        Tok::BinClose => "'>>'".into(),
        Tok::Slash => "'/'".into(),
        Tok::Colon => "':'".into(),
        Tok::Minus => "'-'".into(),
        Tok::Plus => "'+'".into(),
        Tok::Hash => "'#'".into(),
        Tok::End => "'.'".into(),
        Tok::Atom(a) => format!("atom {}", Term::Atom(clip(a))),
        Tok::Var(v) => format!("variable {}", clip(v)),
        Tok::Int(i) => format!("integer {i}"),
        Tok::Float(x) => format!("float {}", Term::Float(*x)),
        Tok::Str(s) => format!("string {}", Term::String(clip(s))),
        Tok::Eof => "end of input".into(),
    }
}

fn expected_at(
    (line, column): (usize, usize),
    expected: &'static str,
    found: &Tok,
    opened_at: Option<(usize, usize)>,
) -> TermError {
    let opened_at = if *found == Tok::Eof { opened_at } else { None };
    TermError {
        line,
        column,
        kind: TermErrorKind::Expected {
            expected,
            found: describe(found),
            opened_at,
        },
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

fn is_atom_start(c: char) -> bool {
    // Erlang names are Latin-1: lowercase letters a-z and ß-ÿ except ÷.
    c.is_ascii_lowercase() || (('\u{df}'..='\u{ff}').contains(&c) && c != '\u{f7}')
}

fn is_var_start(c: char) -> bool {
    c.is_ascii_uppercase() || c == '_' || (('\u{c0}'..='\u{de}').contains(&c) && c != '\u{d7}')
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || c == '_'
        || c == '@'
        || (('\u{c0}'..='\u{ff}').contains(&c) && c != '\u{d7}' && c != '\u{f7}')
}

fn is_space(c: char) -> bool {
    // Erlang treats every control character up to space as whitespace.
    c <= ' ' || c.is_whitespace() || c == '\u{feff}'
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    col: usize,
}

impl Lexer {
    fn new(text: &str) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
            col: 1,
        }
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err(&self, line: usize, column: usize, kind: TermErrorKind) -> TermError {
        TermError { line, column, kind }
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(c) = self.peek_at(0) {
            if is_space(c) {
                self.bump();
            } else if c == '%' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, TermError> {
        self.skip_space_and_comments();
        let (line, col) = (self.line, self.col);
        let Some(c) = self.peek_at(0) else {
            return Ok(Token {
                tok: Tok::Eof,
                line,
                col,
            });
        };
        let simple = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '|' => Some(Tok::Pipe),
            '/' => Some(Tok::Slash),
            ':' => Some(Tok::Colon),
            '-' => Some(Tok::Minus),
            '+' => Some(Tok::Plus),
            '#' => Some(Tok::Hash),
            _ => None,
        };
        if let Some(tok) = simple {
            self.bump();
            return Ok(Token { tok, line, col });
        }
        let tok = match c {
            '<' if self.peek_at(1) == Some('<') => {
                self.bump();
                self.bump();
                Tok::BinOpen
            }
            '>' if self.peek_at(1) == Some('>') => {
                self.bump();
                self.bump();
                Tok::BinClose
            }
            '.' => {
                self.bump();
                match self.peek_at(0) {
                    None => Tok::End,
                    Some(n) if is_space(n) || n == '%' => Tok::End,
                    Some(n) => {
                        return Err(self.err(
                            self.line,
                            self.col,
                            TermErrorKind::Expected {
                                expected: "whitespace or end of input after '.'",
                                found: format!("{n:?}"),
                                opened_at: None,
                            },
                        ))
                    }
                }
            }
            '"' => Tok::Str(self.quoted('"', line, col)?),
            '\'' => Tok::Atom(self.quoted('\'', line, col)?),
            '$' => {
                self.bump();
                let Some(ch) = self.bump() else {
                    return Err(self.err(
                        line,
                        col,
                        TermErrorKind::BadEscape(
                            "'$' at end of input (expected a character)".into(),
                        ),
                    ));
                };
                let ch = if ch == '\\' {
                    self.escape(line, col)?
                } else {
                    ch
                };
                Tok::Int(u64::from(ch))
            }
            c if c.is_ascii_digit() => self.number(line, col)?,
            c if is_atom_start(c) => {
                let name = self.name();
                if RESERVED_WORDS.contains(&name.as_str()) {
                    return Err(self.err(line, col, TermErrorKind::ReservedWord(name)));
                }
                Tok::Atom(name)
            }
            c if is_var_start(c) => Tok::Var(self.name()),
            c => return Err(self.err(line, col, TermErrorKind::UnexpectedChar(c))),
        };
        Ok(Token { tok, line, col })
    }

    fn name(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek_at(0).filter(|&c| is_name_char(c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    /// Reads a `"string"` or `'atom'`; the error points at the opening quote
    /// because that is where the user has to look.
    fn quoted(&mut self, quote: char, line: usize, col: usize) -> Result<String, TermError> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    let kind = if quote == '"' {
                        TermErrorKind::UnterminatedString
                    } else {
                        TermErrorKind::UnterminatedAtom
                    };
                    return Err(self.err(line, col, kind));
                }
                Some(c) if c == quote => return Ok(s),
                Some('\\') => {
                    let (l, c) = (self.line, self.col - 1);
                    s.push(self.escape(l, c)?);
                }
                Some(c) => s.push(c),
            }
        }
    }

    /// Decodes what follows a backslash, with Erlang's escape rules.
    fn escape(&mut self, line: usize, col: usize) -> Result<char, TermError> {
        let bad = |lx: &Self, why: String| lx.err(line, col, TermErrorKind::BadEscape(why));
        let Some(c) = self.bump() else {
            return Err(bad(self, "backslash at end of input".into()));
        };
        let code = match c {
            'n' => 10,
            't' => 9,
            'r' => 13,
            'b' => 8,
            'f' => 12,
            'v' => 11,
            'e' => 27,
            's' => 32,
            'd' => 127,
            '0'..='7' => {
                let mut v = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek_at(0) {
                        Some(d @ '0'..='7') => {
                            v = v * 8 + (d as u32 - '0' as u32);
                            self.bump();
                        }
                        _ => break,
                    }
                }
                v
            }
            'x' => {
                let mut digits = String::new();
                if self.peek_at(0) == Some('{') {
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('}') => break,
                            Some(d) if d.is_ascii_hexdigit() => digits.push(d),
                            _ => {
                                return Err(bad(
                                    self,
                                    "expected hex digits and '}' after '\\x{'".into(),
                                ))
                            }
                        }
                    }
                } else {
                    for _ in 0..2 {
                        match self.bump() {
                            Some(d) if d.is_ascii_hexdigit() => digits.push(d),
                            _ => {
                                return Err(bad(self, "expected two hex digits after '\\x'".into()))
                            }
                        }
                    }
                }
                u32::from_str_radix(&digits, 16)
                    .map_err(|_| bad(self, format!("'\\x{{{digits}}}' is out of range")))?
            }
            '^' => match self.bump() {
                Some(k) if k.is_ascii_alphabetic() || "@[\\]^_".contains(k) => (k as u32) & 0x1f,
                _ => return Err(bad(self, "expected a letter after '\\^'".into())),
            },
            // Erlang maps any other escaped character to itself (\\ \" \' ...).
            other => other as u32,
        };
        char::from_u32(code).ok_or_else(|| bad(self, format!("{code:#x} is not a valid character")))
    }

    fn digits(&mut self, radix: u32) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek_at(0) {
            if c.is_digit(radix) {
                s.push(c);
            } else if c == '_'
                && s.chars().last().is_some_and(|p| p != '_')
                && self.peek_at(1).is_some_and(|n| n.is_digit(radix))
            {
                // Digit separators (OTP 23+), only between digits.
            } else {
                break;
            }
            self.bump();
        }
        s.retain(|c| c != '_');
        s
    }

    fn number(&mut self, line: usize, col: usize) -> Result<Tok, TermError> {
        let bad_int = |lx: &Self, why: String| lx.err(line, col, TermErrorKind::BadInteger(why));
        let int_part = self.digits(10);

        if self.peek_at(0) == Some('#') {
            self.bump();
            let base: u32 = int_part.parse().unwrap_or(0);
            if !(2..=36).contains(&base) {
                return Err(bad_int(
                    self,
                    format!("base {int_part} is not between 2 and 36"),
                ));
            }
            let digits = self.digits(base);
            if let Some(c) = self.peek_at(0).filter(|&c| is_name_char(c)) {
                return Err(bad_int(self, format!("{c:?} is not a base-{base} digit")));
            }
            if digits.is_empty() {
                return Err(bad_int(self, format!("no digits after '{base}#'")));
            }
            return u64::from_str_radix(&digits, base)
                .map(Tok::Int)
                .map_err(|_| bad_int(self, format!("{base}#{digits} is out of range")));
        }

        let is_float =
            self.peek_at(0) == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit());
        if !is_float {
            if let Some(c) = self.peek_at(0).filter(|&c| is_name_char(c)) {
                return Err(bad_int(self, format!("unexpected {c:?} after {int_part}")));
            }
            return int_part
                .parse::<u64>()
                .map(Tok::Int)
                .map_err(|_| bad_int(self, format!("{int_part} is out of range")));
        }

        self.bump();
        let mut text = format!("{int_part}.{}", self.digits(10));
        if matches!(self.peek_at(0), Some('e' | 'E')) {
            self.bump();
            text.push('e');
            if let Some(sign @ ('-' | '+')) = self.peek_at(0) {
                self.bump();
                text.push(sign);
            }
            let exp = self.digits(10);
            if exp.is_empty() {
                return Err(self.err(
                    line,
                    col,
                    TermErrorKind::BadFloat(format!("no digits in the exponent of {text}")),
                ));
            }
            text.push_str(&exp);
        }
        if let Some(c) = self.peek_at(0).filter(|&c| is_name_char(c)) {
            return Err(self.err(
                line,
                col,
                TermErrorKind::BadFloat(format!("unexpected {c:?} after {text}")),
            ));
        }
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Tok::Float(x)),
            _ => Err(self.err(
                line,
                col,
                TermErrorKind::BadFloat(format!("{text} is out of range")),
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// Parser

struct Parser {
    lexer: Lexer,
    peeked: Option<Token>,
    /// Position just after the last token taken with `next`.
    last_end: (usize, usize),
}

impl Parser {
    fn new(text: &str) -> Self {
        Parser {
            lexer: Lexer::new(text),
            peeked: None,
            last_end: (1, 1),
        }
    }

    // Tokens are produced on demand so that errors are reported in file
    // order: a syntax error on line 3 must not be masked by a bad escape on
    // line 40.
    fn peek(&mut self) -> Result<&Token, TermError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> Result<Token, TermError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next_token()?,
        };
        self.last_end = (self.lexer.line, self.lexer.col);
        Ok(t)
    }

    fn term(&mut self, depth: usize) -> Result<Term, TermError> {
        let t = self.next()?;
        let pos = (t.line, t.col);
        if depth >= MAX_DEPTH {
            return Err(TermError {
                line: t.line,
                column: t.col,
                kind: TermErrorKind::TooDeep,
            });
        }
        match t.tok {
            Tok::Atom(a) => Ok(Term::Atom(a)),
            Tok::Int(m) => signed(m, false, pos).map(Term::Integer),
            Tok::Float(x) => Ok(Term::Float(x)),
            Tok::Minus | Tok::Plus => {
                let negative = t.tok == Tok::Minus;
                let n = self.next()?;
                match n.tok {
                    Tok::Int(m) => signed(m, negative, pos).map(Term::Integer),
                    Tok::Float(x) => Ok(Term::Float(if negative { -x } else { x })),
                    other => Err(expected_at(
                        (n.line, n.col),
                        "a number after the sign",
                        &other,
                        None,
                    )),
                }
            }
            Tok::Str(mut s) => {
                // "ab" "cd" is one string in Erlang.
                while let Tok::Str(_) = self.peek()?.tok {
                    if let Tok::Str(more) = self.next()?.tok {
                        s.push_str(&more);
                    }
                }
                Ok(Term::String(s))
            }
            Tok::LBrace => self
                .sequence(pos, depth, Tok::RBrace, "',' or '}' in tuple")
                .map(Term::Tuple),
            Tok::LBracket => self
                .sequence(pos, depth, Tok::RBracket, "',' or ']' in list")
                .map(Term::List),
            Tok::BinOpen => self.binary(pos),
            Tok::Var(v) => Err(TermError {
                line: t.line,
                column: t.col,
                kind: TermErrorKind::Variable(v),
            }),
            Tok::Hash => Err(TermError {
                line: t.line,
                column: t.col,
                kind: TermErrorKind::Unsupported("maps and records"),
            }),
            other => Err(expected_at(pos, "a term", &other, None)),
        }
    }

    fn sequence(
        &mut self,
        opened: (usize, usize),
        depth: usize,
        close: Tok,
        expected: &'static str,
    ) -> Result<Vec<Term>, TermError> {
        let mut items = Vec::new();
        if self.peek()?.tok == close {
            self.next()?;
            return Ok(items);
        }
        loop {
            items.push(self.term(depth + 1)?);
            let t = self.next()?;
            match t.tok {
                Tok::Comma => {}
                ref tok if *tok == close => return Ok(items),
                Tok::Pipe if close == Tok::RBracket => {
                    return Err(TermError {
                        line: t.line,
                        column: t.col,
                        kind: TermErrorKind::Unsupported("improper lists ('[H | T]')"),
                    })
                }
                other => return Err(expected_at((t.line, t.col), expected, &other, Some(opened))),
            }
        }
    }

    fn binary(&mut self, opened: (usize, usize)) -> Result<Term, TermError> {
        let mut bytes = Vec::new();
        if self.peek()?.tok == Tok::BinClose {
            self.next()?;
            return Ok(Term::Binary(bytes));
        }
        loop {
            let t = self.next()?;
            let pos = (t.line, t.col);
            let seg = match t.tok {
                Tok::Str(s) => Seg::Text(s),
                Tok::Int(m) => Seg::Int(signed(m, false, pos)?),
                Tok::Minus => {
                    let n = self.next()?;
                    match n.tok {
                        Tok::Int(m) => Seg::Int(signed(m, true, pos)?),
                        other => {
                            return Err(expected_at(
                                (n.line, n.col),
                                "an integer after '-'",
                                &other,
                                None,
                            ))
                        }
                    }
                }
                other => {
                    return Err(expected_at(
                        pos,
                        "a string or integer segment in binary",
                        &other,
                        Some(opened),
                    ))
                }
            };
            let mut utf8 = false;
            match self.peek()?.tok {
                Tok::Slash => {
                    self.next()?;
                    let ty = self.next()?;
                    match ty.tok {
                        Tok::Atom(ref a) if a == "utf8" => utf8 = true,
                        Tok::Atom(ref a) if a == "integer" || a == "binary" => {}
                        other => {
                            return Err(expected_at(
                                (ty.line, ty.col),
                                "utf8, integer or binary after '/'",
                                &other,
                                None,
                            ))
                        }
                    }
                }
                Tok::Colon => {
                    let c = self.next()?;
                    return Err(TermError {
                        line: c.line,
                        column: c.col,
                        kind: TermErrorKind::Unsupported("binary segment sizes"),
                    });
                }
                _ => {}
            }
            seg.encode(utf8, pos, &mut bytes)?;
            let t = self.next()?;
            match t.tok {
                Tok::Comma => {}
                Tok::BinClose => return Ok(Term::Binary(bytes)),
                other => {
                    return Err(expected_at(
                        (t.line, t.col),
                        "',' or '>>' in binary",
                        &other,
                        Some(opened),
                    ))
                }
            }
        }
    }
}

/// One segment of a `<<...>>` binary.
enum Seg {
    Text(String),
    Int(i64),
}

impl Seg {
    fn encode(
        self,
        utf8: bool,
        (line, column): (usize, usize),
        bytes: &mut Vec<u8>,
    ) -> Result<(), TermError> {
        let err = |why: String| TermError {
            line,
            column,
            kind: TermErrorKind::BadBinary(why),
        };
        match self {
            Seg::Text(s) if utf8 => bytes.extend_from_slice(s.as_bytes()),
            Seg::Text(s) => {
                // Without /utf8 Erlang stores one byte per character; we
                // refuse rather than silently truncate characters above 255.
                for ch in s.chars() {
                    let b = u8::try_from(u32::from(ch)).map_err(|_| {
                        err(format!(
                            "{ch:?} does not fit in a byte; write the segment as \"...\"/utf8"
                        ))
                    })?;
                    bytes.push(b);
                }
            }
            Seg::Int(i) if utf8 => {
                let ch = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| err(format!("{i} is not a valid character")))?;
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            Seg::Int(i) => {
                // Erlang would keep the low 8 bits; a config value that
                // large is a mistake worth reporting.
                let b = u8::try_from(i)
                    .map_err(|_| err(format!("{i} does not fit in a byte (0..255)")))?;
                bytes.push(b);
            }
        }
        Ok(())
    }
}

fn signed(
    magnitude: u64,
    negative: bool,
    (line, column): (usize, usize),
) -> Result<i64, TermError> {
    let value = if negative {
        -i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    i64::try_from(value).map_err(|_| TermError {
        line,
        column,
        kind: TermErrorKind::BadInteger(format!("{value} does not fit in 64 bits")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Term {
        Term::Atom(s.into())
    }
    fn int(i: i64) -> Term {
        Term::Integer(i)
    }
    fn string(s: &str) -> Term {
        Term::String(s.into())
    }

    fn err_at(text: &str) -> (usize, usize, String) {
        let e = consult(text).expect_err(text);
        (e.line, e.column, e.to_string())
    }

    #[test]
    fn atoms() {
        assert_eq!(parse_term("foo_bar").unwrap(), atom("foo_bar"));
        assert_eq!(parse_term("node@host").unwrap(), atom("node@host"));
        assert_eq!(parse_term("'quoted atom'").unwrap(), atom("quoted atom"));
        assert_eq!(parse_term("'it\\'s'").unwrap(), atom("it's"));
        assert_eq!(parse_term("'Cap'").unwrap(), atom("Cap"));
        assert_eq!(parse_term("'end'").unwrap(), atom("end"));
        assert_eq!(parse_term("true").unwrap(), atom("true"));
    }

    #[test]
    fn integers() {
        assert_eq!(parse_term("30000").unwrap(), int(30000));
        assert_eq!(parse_term("-42").unwrap(), int(-42));
        assert_eq!(parse_term("- 42").unwrap(), int(-42));
        assert_eq!(parse_term("+7").unwrap(), int(7));
        assert_eq!(parse_term("16#FF").unwrap(), int(255));
        assert_eq!(parse_term("16#ff").unwrap(), int(255));
        assert_eq!(parse_term("-16#10").unwrap(), int(-16));
        assert_eq!(parse_term("2#1010").unwrap(), int(10));
        assert_eq!(parse_term("36#Z").unwrap(), int(35));
        assert_eq!(parse_term("1_000_000").unwrap(), int(1_000_000));
        assert_eq!(parse_term("$a").unwrap(), int(97));
        assert_eq!(parse_term("$\\n").unwrap(), int(10));
        assert_eq!(parse_term("$ ").unwrap(), int(32));
        assert_eq!(parse_term("$\\\\").unwrap(), int(92));
        assert_eq!(parse_term("$é").unwrap(), int(233));
        assert_eq!(parse_term("9223372036854775807").unwrap(), int(i64::MAX));
        assert_eq!(parse_term("-9223372036854775808").unwrap(), int(i64::MIN));
    }

    #[test]
    fn floats() {
        assert_eq!(parse_term("1.5").unwrap(), Term::Float(1.5));
        assert_eq!(parse_term("-0.25").unwrap(), Term::Float(-0.25));
        assert_eq!(parse_term("2.0e3").unwrap(), Term::Float(2000.0));
        assert_eq!(parse_term("2.5E-1").unwrap(), Term::Float(0.25));
        assert_eq!(parse_term("1.0e+2").unwrap(), Term::Float(100.0));
    }

    #[test]
    fn strings() {
        assert_eq!(parse_term(r#""hello""#).unwrap(), string("hello"));
        assert_eq!(parse_term(r#""""#).unwrap(), string(""));
        assert_eq!(
            parse_term(r#""a\nb\tc\\d\"e\'f""#).unwrap(),
            string("a\nb\tc\\d\"e'f")
        );
        assert_eq!(
            parse_term(r#""\x41\x{263A}\101\s\^A""#).unwrap(),
            string("A\u{263A}A \u{1}")
        );
        assert_eq!(parse_term(r#""ab" "cd""#).unwrap(), string("abcd"));
        assert_eq!(parse_term("\"two\nlines\"").unwrap(), string("two\nlines"));
        assert_eq!(
            parse_term(r#""% not a comment""#).unwrap(),
            string("% not a comment")
        );
        assert_eq!(parse_term(r#""héllo ☺""#).unwrap(), string("héllo ☺"));
    }

    #[test]
    fn binaries() {
        assert_eq!(parse_term("<<>>").unwrap(), Term::Binary(vec![]));
        assert_eq!(
            parse_term(r#"<<"text">>"#).unwrap(),
            Term::Binary(b"text".to_vec())
        );
        assert_eq!(
            parse_term("<<1,2,255>>").unwrap(),
            Term::Binary(vec![1, 2, 255])
        );
        assert_eq!(
            parse_term(r#"<<"é"/utf8>>"#).unwrap(),
            Term::Binary("é".as_bytes().to_vec())
        );
        assert_eq!(parse_term(r#"<<"é">>"#).unwrap(), Term::Binary(vec![0xe9]));
        assert_eq!(
            parse_term(r#"<<"a", $b, 99>>"#).unwrap(),
            Term::Binary(b"abc".to_vec())
        );
        assert_eq!(
            parse_term(r#"<< "a" >>"#).unwrap(),
            Term::Binary(b"a".to_vec())
        );
    }

    #[test]
    fn tuples_and_lists() {
        assert_eq!(parse_term("{}").unwrap(), Term::Tuple(vec![]));
        assert_eq!(parse_term("[]").unwrap(), Term::List(vec![]));
        assert_eq!(
            parse_term("{a, b}").unwrap(),
            Term::Tuple(vec![atom("a"), atom("b")])
        );
        assert_eq!(
            parse_term("[{port, 30000}, [], {x, [1, 2.5, \"s\"]}]").unwrap(),
            Term::List(vec![
                Term::Tuple(vec![atom("port"), int(30000)]),
                Term::List(vec![]),
                Term::Tuple(vec![
                    atom("x"),
                    Term::List(vec![int(1), Term::Float(2.5), string("s")])
                ]),
            ])
        );
        assert_eq!(
            parse_term("{0,0,0,0}").unwrap(),
            Term::Tuple(vec![int(0); 4])
        );
    }

    #[test]
    fn comments_and_consult() {
        let text = "% header\n{a, 1}. % trailing\n%% another\n[b,\n % inside\n c].\n";
        assert_eq!(
            consult(text).unwrap(),
            vec![
                Term::Tuple(vec![atom("a"), int(1)]),
                Term::List(vec![atom("b"), atom("c")]),
            ]
        );
        assert_eq!(consult("").unwrap(), vec![]);
        assert_eq!(consult("% nothing but a comment").unwrap(), vec![]);
        assert_eq!(consult("a.").unwrap(), vec![atom("a")]);
        assert_eq!(
            consult("1.\n2.5.%c").unwrap(),
            vec![int(1), Term::Float(2.5)]
        );
        assert_eq!(parse_term("{a}.").unwrap(), Term::Tuple(vec![atom("a")]));
        assert_eq!(
            parse_term("  {a}  . % done\n").unwrap(),
            Term::Tuple(vec![atom("a")])
        );
    }

    #[test]
    fn unterminated_string_points_at_opening_quote() {
        let (line, col, msg) = err_at("{a, 1}.\n{b,\n  \"never closed}.\n\n");
        assert_eq!((line, col), (3, 3), "{msg}");
        assert!(msg.contains("unterminated string"), "{msg}");
        let (line, _, msg) = err_at("{a, 'oops}.\n");
        assert_eq!(line, 1);
        assert!(msg.contains("unterminated quoted atom"), "{msg}");
    }

    #[test]
    fn missing_dot() {
        // At end of input the error points just past the term, not at EOF.
        let (line, col, msg) = err_at("{a, 1}.\n{b, 2}\n\n\n");
        assert_eq!((line, col), (2, 7), "{msg}");
        assert!(
            msg.contains("expected '.' after the term, found end of input"),
            "{msg}"
        );
        // Between two terms it points at the start of the next one.
        let (line, col, msg) = err_at("{a, 1}\n{b, 2}.\n");
        assert_eq!((line, col), (2, 1), "{msg}");
        assert!(msg.contains("found '{'"), "{msg}");
        let (line, _, msg) = err_at("{a, 1}.{b, 2}.");
        assert_eq!(line, 1);
        assert!(msg.contains("after '.'"), "{msg}");
    }

    #[test]
    fn unbalanced_brackets() {
        let (line, col, msg) = err_at("{a,\n  [1, 2}.\n");
        assert_eq!((line, col), (2, 8), "{msg}");
        assert_eq!(
            msg,
            "line 2, column 8: expected ',' or ']' in list, found '}'"
        );

        let (line, col, msg) = err_at("{application, x,\n [{env, []}\n");
        assert_eq!((line, col), (3, 1), "{msg}");
        assert!(msg.contains("found end of input"), "{msg}");
        assert!(msg.contains("opened at line 2, column 2"), "{msg}");

        let (line, _, msg) = err_at("{a, b}}.\n");
        assert_eq!(line, 1);
        assert!(
            msg.contains("expected '.' after the term, found '}'"),
            "{msg}"
        );

        let (line, _, _) = err_at("\n\n]");
        assert_eq!(line, 3);
        let (line, col, msg) = err_at("\n\n\n   {port 30000}.");
        assert_eq!((line, col), (4, 10));
        assert_eq!(
            msg,
            "line 4, column 10: expected ',' or '}' in tuple, found integer 30000"
        );
    }

    #[test]
    fn bad_integers() {
        let (line, col, msg) = err_at("{a,\n 12ab}.");
        assert_eq!((line, col), (2, 2), "{msg}");
        assert!(msg.contains("bad integer"), "{msg}");
        let (line, _, msg) = err_at("\n16#FG.");
        assert_eq!(line, 2);
        assert!(msg.contains("'G' is not a base-16 digit"), "{msg}");
        let (_, _, msg) = err_at("37#1.");
        assert!(msg.contains("base 37"), "{msg}");
        let (_, _, msg) = err_at("16#.");
        assert!(msg.contains("no digits"), "{msg}");
        let (_, _, msg) = err_at("99999999999999999999.");
        assert!(msg.contains("out of range"), "{msg}");
        let (_, _, msg) = err_at("9223372036854775808.");
        assert!(msg.contains("64 bits"), "{msg}");
        let (_, _, msg) = err_at("1.0e.");
        assert!(msg.contains("bad float"), "{msg}");
        let (line, _, msg) = err_at("\n\n\n$");
        assert_eq!(line, 4);
        assert!(msg.contains("'$'"), "{msg}");
        let (_, _, msg) = err_at("-a.");
        assert!(msg.contains("a number after the sign"), "{msg}");
    }

    #[test]
    fn stray_characters() {
        let (line, col, msg) = err_at("{a, 1}.\n{b, ;}.\n");
        assert_eq!((line, col), (2, 5), "{msg}");
        assert_eq!(msg, "line 2, column 5: unexpected character ';'");
        let (line, _, msg) = err_at("% c\n% c\n[a, b] ?\n");
        assert_eq!(line, 3);
        assert!(msg.contains("'?'"), "{msg}");
        let (line, _, msg) = err_at("[a, b] >\n");
        assert_eq!(line, 1);
        assert!(msg.contains("'>'"), "{msg}");
    }

    #[test]
    fn unsupported_and_invalid_forms() {
        let (_, _, msg) = err_at("[a | b].");
        assert!(msg.contains("improper lists"), "{msg}");
        let (_, _, msg) = err_at("#{a => 1}.");
        assert!(msg.contains("maps"), "{msg}");
        let (line, col, msg) = err_at("\n{port, Port}.");
        assert_eq!((line, col), (2, 8));
        assert!(msg.contains("variable 'Port'"), "{msg}");
        let (_, _, msg) = err_at("{mod, end}.");
        assert!(msg.contains("reserved word"), "{msg}");
        let (_, _, msg) = err_at("<<1:8>>.");
        assert!(msg.contains("segment sizes"), "{msg}");
        let (_, _, msg) = err_at("<<256>>.");
        assert!(msg.contains("fit in a byte"), "{msg}");
        let (_, _, msg) = err_at("<<\"☺\">>.");
        assert!(msg.contains("/utf8"), "{msg}");
        let (_, _, msg) = err_at("\"\\x{110000}\".");
        assert!(msg.contains("escape"), "{msg}");
        assert!(parse_term("a b").is_err());
        assert!(parse_term("").is_err());
        assert!(parse_term("a. b.").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        let e = consult(&text).unwrap_err();
        assert_eq!(e.kind, TermErrorKind::TooDeep);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse_term(&ok).is_ok());
    }

    #[test]
    fn every_truncation_is_handled_without_panicking() {
        let sample = "%% c\n{application, 'rt c', [{env, [{port, -16#7F}, {f, 1.5e-3}, \
                      {s, \"a\\x{41}\\n\"}, {b, <<\"é\"/utf8, 1>>}, {c, $\\t}]}]}.\n";
        for (i, _) in sample.char_indices() {
            let prefix = &sample[..i];
            let _ = consult(prefix);
            let _ = parse_term(prefix);
            // Also drop one character from the middle.
            let mut holed = sample.to_string();
            holed.remove(i);
            let _ = consult(&holed);
        }
        assert!(consult(sample).is_ok());
    }

    #[test]
    fn error_is_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(consult("{").unwrap_err());
        assert!(e.to_string().starts_with("line 1, column 2: "));
    }

    #[test]
    fn display_round_trips() {
        let samples = [
            "{application,rtcserver,[{env,[{port,30000}]}]}",
            "['quoted atom','end',\"a\\\"b\\n\",<<\"bin\">>,<<1,2>>,-5,1.5,1.0e20]",
            "<<\"é\"/utf8>>",
            "{}",
        ];
        for s in samples {
            let t = parse_term(s).unwrap();
            assert_eq!(parse_term(&t.to_string()).unwrap(), t, "{s} -> {t}");
        }
        assert_eq!(parse_term("'hello'").unwrap().to_string(), "hello");
    }

    fn book_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rebar-compat")
            .join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn book_top_level_rebar_config() {
        let terms = consult(&book_file("rebar.config")).unwrap();
        assert_eq!(
            terms,
            vec![Term::Tuple(vec![
                atom("sub_dirs"),
                Term::List(vec![string("apps/rtcserver")])
            ])]
        );
    }

    #[test]
    fn book_app_rebar_config() {
        let terms = consult(&book_file("apps/rtcserver/rebar.config")).unwrap();
        assert_eq!(
            terms[0],
            Term::Tuple(vec![
                atom("erl_opts"),
                Term::List(vec![atom("warnings_as_errors")])
            ])
        );
        let (key, deps) = terms[1].as_pair().unwrap();
        assert_eq!(key, "deps");
        let names: Vec<&str> = deps
            .as_list()
            .unwrap()
            .iter()
            .map(|d| d.as_tuple().unwrap()[0].as_atom().unwrap())
            .collect();
        assert_eq!(names, ["gproc", "jsonerl", "cowboy"]);
    }

    #[test]
    fn book_app_src() {
        let terms = consult(&book_file("apps/rtcserver/src/rtcserver.app.src")).unwrap();
        assert_eq!(terms.len(), 1);
        let app = terms[0].as_tuple().unwrap();
        assert_eq!(app[0], atom("application"));
        assert_eq!(app[1], atom("rtcserver"));
        let props = app[2].as_list().unwrap();
        let env = props
            .iter()
            .filter_map(Term::as_pair)
            .find(|(k, _)| *k == "env")
            .unwrap()
            .1;
        assert_eq!(
            env,
            &Term::List(vec![
                Term::Tuple(vec![atom("port"), int(30000)]),
                Term::Tuple(vec![atom("acceptors"), int(100)]),
                Term::Tuple(vec![atom("max_keepalive"), int(50)]),
                Term::Tuple(vec![atom("timeout"), int(500)]),
            ])
        );
        let m = props
            .iter()
            .filter_map(Term::as_pair)
            .find(|(k, _)| *k == "mod")
            .unwrap()
            .1;
        assert_eq!(
            m,
            &Term::Tuple(vec![atom("rtcserver_app"), Term::List(vec![])])
        );
    }
}
