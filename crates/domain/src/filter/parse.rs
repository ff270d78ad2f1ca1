//! Lexer and recursive-descent parser for the filter language.
//!
//! Grammar (AIP-160 subset; keywords are upper case):
//! ```text
//! filter     = [ expression ]
//! expression = factor { "AND" factor }
//! factor     = term { "OR" term }
//! term       = [ "NOT" | "-" ] simple
//! simple     = "(" expression ")" | function | restriction
//! restriction= FIELD COMPARATOR value
//! function   = "bbox" "(" number "," number "," number "," number ")"
//! value      = WORD | NUMBER | STRING
//! ```

use std::fmt;

use super::{Comparator, CountField, Expr, Test};
use crate::{
    IncidentId, PartyId, Timestamp,
    echo::quote,
    geo::{BoundingBox, LatLng},
    incident::IncidentStatus,
    report::{Category, Zone},
};

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of parentheses and NOT accepted.
const MAX_DEPTH: usize = 32;

/// Why a filter is invalid, and where: `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// 1-based character column of the offending token.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Cmp(Comparator),
    LParen,
    RParen,
    Comma,
    Minus,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => f.write_str(&quote(w)),
            Token::Str(s) => write!(f, "the string {}", quote(s)),
            Token::Cmp(c) => write!(f, "comparator {c:?}"),
            Token::LParen => f.write_str("'('"),
            Token::RParen => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
            Token::Minus => f.write_str("'-'"),
        }
    }
}

fn error<T>(column: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        column,
        message: message.into(),
    })
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let column = i + 1;
        let c = chars[i];
        let single = match c {
            '(' => Some(Token::LParen),
            ')' => Some(Token::RParen),
            ',' => Some(Token::Comma),
            '=' | ':' => Some(Token::Cmp(Comparator::Eq)),
            _ => None,
        };
        if c.is_whitespace() {
            i += 1;
        } else if let Some(token) = single {
            tokens.push((column, token));
            i += 1;
        } else if c == '-' && !chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            tokens.push((column, Token::Minus));
            i += 1;
        } else if matches!(c, '!' | '<' | '>') {
            let eq = chars.get(i + 1) == Some(&'=');
            let cmp = match (c, eq) {
                ('!', true) => Comparator::Ne,
                ('<', false) => Comparator::Lt,
                ('<', true) => Comparator::Le,
                ('>', false) => Comparator::Gt,
                ('>', true) => Comparator::Ge,
                _ => return error(column, "'!' must be followed by '=' (use NOT to negate)"),
            };
            tokens.push((column, Token::Cmp(cmp)));
            i += if eq { 2 } else { 1 };
        } else if c == '"' || c == '\'' {
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return error(column, "unterminated string"),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&e) => value.push(e),
                            None => return error(column, "unterminated string"),
                        }
                        i += 2;
                    }
                    Some(&ch) => {
                        value.push(ch);
                        i += 1;
                    }
                }
            }
            tokens.push((column, Token::Str(value)));
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || "_-.".contains(chars[i])) {
                i += 1;
            }
            tokens.push((column, Token::Word(chars[start..i].iter().collect())));
        } else {
            return error(column, format!("unexpected character {c:?}"));
        }
    }
    Ok(tokens)
}

/// Parses a filter into its expression; `None` for an empty filter.
pub(super) fn parse(text: &str) -> Result<Option<Expr>, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        return error(1, format!("filter is longer than {MAX_FILTER_BYTES} bytes"));
    }
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let end = text.chars().count() + 1;
    let mut parser = Parser {
        tokens,
        at: 0,
        end,
        depth: 0,
    };
    let expr = parser.expression()?;
    if let Some((column, token)) = parser.tokens.get(parser.at) {
        let hint = match parser.unquoted_value_hint() {
            Some(hint) => hint,
            None if matches!(token, Token::Word(_)) => " (join restrictions with AND or OR)".to_owned(),
            None => String::new(),
        };
        return error(*column, format!("unexpected {token}{hint}"));
    }
    Ok(Some(expr))
}

/// Whether `word` joins restrictions rather than being a value.
fn is_keyword(word: &str) -> bool {
    matches!(word, "AND" | "OR" | "NOT")
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
    depth: usize,
}

/// The fields a restriction may name, for error messages.
const FIELDS: &str = "id, status, category, zone, area, reporter, responsible, killed_low, killed_high, \
injured_low, injured_high, report_count, updated_position, occurred, updated";

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(c, _)| *c)
    }

    fn next(&mut self, expected: &str) -> Result<(usize, Token), FilterError> {
        match self.tokens.get(self.at) {
            Some(token) => {
                self.at += 1;
                Ok(token.clone())
            }
            None => error(self.end, format!("expected {expected}, found the end of the filter")),
        }
    }

    /// When the next token is a bare word right after an unquoted value
    /// (`area = Gaza Strip`), a hint to quote the whole value.
    fn unquoted_value_hint(&self) -> Option<String> {
        let value_at = self.at.checked_sub(1)?;
        let before = self.tokens.get(value_at.checked_sub(1)?)?;
        let (Token::Cmp(_), Some((_, Token::Word(value)))) = (&before.1, self.tokens.get(value_at)) else {
            return None;
        };
        let mut words: Vec<&str> = std::iter::once(value.as_str())
            .chain(self.tokens[self.at..].iter().map_while(|(_, token)| match token {
                Token::Word(word) if !is_keyword(word) => Some(word.as_str()),
                _ => None,
            }))
            .collect();
        // A word followed by a comparator starts the next restriction.
        let after = self.at + words.len() - 1;
        if matches!(self.tokens.get(after), Some((_, Token::Cmp(_)))) {
            words.pop();
        }
        (words.len() > 1).then(|| format!(" (quote a value that has spaces: \"{}\")", words.join(" ")))
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn nest(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return error(self.column(), format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn expression(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.factor()?];
        while self.keyword("AND") {
            parts.push(self.factor()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn factor(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.term()?];
        while self.keyword("OR") {
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn term(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("NOT")
            || self.peek() == Some(&Token::Minus) && {
                self.at += 1;
                true
            }
        {
            self.nest()?;
            let inner = self.simple()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.simple()
    }

    fn simple(&mut self) -> Result<Expr, FilterError> {
        let (column, token) = self.next("a restriction such as category = AIR_STRIKE")?;
        match token {
            Token::LParen => {
                self.nest()?;
                let inner = self.expression()?;
                self.depth -= 1;
                let hint = self.unquoted_value_hint().unwrap_or_default();
                match self.next("')'")? {
                    (_, Token::RParen) => Ok(inner),
                    (c, t) => error(c, format!("expected ')', found {t}{hint}")),
                }
            }
            Token::Word(word) if word == "bbox" && self.peek() == Some(&Token::LParen) => self.bbox(column),
            Token::Word(word) if is_keyword(&word) => {
                error(column, format!("expected a restriction, found the keyword {word}"))
            }
            Token::Word(field) => {
                let (cmp_column, cmp) = match self.next("a comparator (=, !=, <, <=, >, >=, :)")? {
                    (c, Token::Cmp(cmp)) => (c, cmp),
                    (c, t) => {
                        return error(c, format!("expected a comparator after {}, found {t}", quote(&field)));
                    }
                };
                let (value_column, value) = match self.next("a value")? {
                    (c, Token::Word(w)) | (c, Token::Str(w)) => (c, w),
                    (c, t) => return error(c, format!("expected a value, found {t}")),
                };
                restriction(column, &field, cmp_column, cmp, value_column, &value).map(Expr::Test)
            }
            other => error(column, format!("expected a restriction, found {other}")),
        }
    }

    fn bbox(&mut self, column: usize) -> Result<Expr, FilterError> {
        self.at += 1; // '('
        let mut numbers = Vec::new();
        for i in 0..4 {
            if i > 0 {
                match self.next("','")? {
                    (_, Token::Comma) => {}
                    (c, t) => {
                        return error(c, format!("expected ',' in bbox(west, south, east, north), found {t}"));
                    }
                }
            }
            match self.next("a number")? {
                (c, Token::Word(w)) => match w.parse::<f64>() {
                    Ok(n) if n.is_finite() => numbers.push((c, n)),
                    _ => return error(c, format!("expected a number in bbox, found {}", quote(&w))),
                },
                (c, t) => return error(c, format!("expected a number in bbox, found {t}")),
            }
        }
        match self.next("')'")? {
            (_, Token::RParen) => {}
            (c, t) => return error(c, format!("expected ')' closing bbox, found {t}")),
        }
        let [(_, west), (_, south), (_, east), (_, north)] = numbers[..] else {
            return error(column, "bbox takes four numbers");
        };
        let corner = |lat, lon| LatLng::new(lat, lon).or_else(|e| error(column, format!("bbox: {e}")));
        let (south_west, north_east) = (corner(south, west)?, corner(north, east)?);
        if south > north || west > east {
            return error(
                column,
                "bbox(west, south, east, north) needs west <= east and south <= north",
            );
        }
        Ok(Expr::Test(Test::BBox(BoundingBox { south_west, north_east })))
    }
}

fn restriction(
    column: usize,
    field: &str,
    cmp_column: usize,
    cmp: Comparator,
    value_column: usize,
    value: &str,
) -> Result<Test, FilterError> {
    let equality = |field_name: &str| match cmp {
        Comparator::Eq => Ok(true),
        Comparator::Ne => Ok(false),
        _ => error(cmp_column, format!("{field_name} takes only =, != or :")),
    };
    let bad_value = |rule: String| FilterError {
        column: value_column,
        message: format!("{field}: {rule}"),
    };
    fn named<T: Copy>(found: Option<T>, all: &[T], name: fn(T) -> &'static str, value: &str) -> Result<T, String> {
        found.ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            format!("unknown value {}; one of {}", quote(value), names.join(", "))
        })
    }
    // Enum values match in any case, as `area` does.
    let upper = value.to_ascii_uppercase();
    let party = |v: &str| v.parse::<PartyId>().map_err(bad_value);
    let count = |f: CountField| match value.parse::<u64>() {
        Ok(n) => Ok(Test::Count(f, cmp, n)),
        Err(_) => Err(bad_value(format!("{} is not a whole number", quote(value)))),
    };
    let time = || Timestamp::parse_rfc3339(value).map_err(|e| bad_value(format!("{e} (in quotes)")));
    match field {
        "id" | "incident_id" => Ok(Test::Id(
            equality(field)?,
            value.parse::<IncidentId>().map_err(bad_value)?,
        )),
        "status" => Ok(Test::Status(
            equality(field)?,
            named(
                IncidentStatus::from_name(&upper),
                IncidentStatus::ALL,
                IncidentStatus::name,
                value,
            )
            .map_err(bad_value)?,
        )),
        "category" => Ok(Test::Category(
            equality(field)?,
            named(Category::from_name(&upper), Category::ALL, Category::name, value).map_err(bad_value)?,
        )),
        "zone" => Ok(Test::Zone(
            equality(field)?,
            named(Zone::from_name(&upper), Zone::ALL, Zone::name, value).map_err(bad_value)?,
        )),
        "area" => Ok(Test::Area(equality(field)?, value.to_owned())),
        "reporter" => Ok(Test::Reporter(equality(field)?, party(value)?)),
        "responsible" => Ok(Test::Responsible(equality(field)?, party(value)?)),
        "killed_low" => count(CountField::KilledLow),
        "killed_high" => count(CountField::KilledHigh),
        "injured_low" => count(CountField::InjuredLow),
        "injured_high" => count(CountField::InjuredHigh),
        "report_count" => count(CountField::ReportCount),
        "updated_position" => count(CountField::UpdatedPosition),
        "occurred" => Ok(Test::Occurred(cmp, time()?)),
        "updated" => Ok(Test::Updated(cmp, time()?)),
        _ => error(
            column,
            format!(
                "unknown field {}; fields are {FIELDS}, and bbox(west, south, east, north)",
                quote(field)
            ),
        ),
    }
}
