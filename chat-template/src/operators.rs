//! jinja2's `~` and, in templates that make `Markup`, `+`.
//!
//! minijinja joins the operands of `~` with its own spelling of values (`0.00001` where Python
//! writes `1e-05`, `[1, "a"]` for `[1, 'a']`), and with auto-escaping off its `+` never escapes
//! (in jinja2 `Markup + str` escapes the `str` whatever the setting). Neither operator can be
//! hooked, so before compiling, kiln rewrites `a ~ b` into `__kiln_cat(a , b)`, which joins
//! Python's `str()` of both, and, in a template that applies `safe`, `e`, `escape` or
//! `forceescape`, `a + b` into `__kiln_add(a , b)`, which follows `Markup`'s `__add__` and
//! `__radd__`. The operands are found with minijinja's own parser; text is only inserted or
//! replaced inside a line, so errors keep their line numbers.
//!
//! In templates that make no `Markup`, a printed chain of `+` that starts with a string literal
//! (`{{ '<|start|>' + m.role + '\n' + m.content | trim }}`) is printed operand by operand
//! instead (`{{ '<|start|>' }}{{ m.role | __kiln_str }}...`): the same text without building
//! the intermediate strings. Every operand after the first must be a `str` (jinja2's
//! `str + x` is a `TypeError` otherwise), which `__kiln_str` checks.

use minijinja::machinery::ast::{self, BinOpKind, CallArg, Expr, Stmt};
use minijinja::machinery::parse;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

use crate::filters::py_type_name;
use crate::limits::ensure_bytes;
use crate::python;
use crate::value::seq_items;

/// The function `a ~ b` is rewritten to.
pub(crate) const CAT: &str = "__kiln_cat";
/// The function `a + b` is rewritten to in templates that make `Markup`.
pub(crate) const ADD: &str = "__kiln_add";
/// The filter that checks an operand of a split `+` chain is a string.
pub(crate) const STR: &str = "__kiln_str";

/// Filters whose result is a jinja2 `Markup` with auto-escaping off.
const MARKUP_FILTERS: [&str; 4] = ["safe", "e", "escape", "forceescape"];
/// Filters that return `Markup` when given `Markup` (they call `str` methods on it).
const MARKUP_KEEPING_FILTERS: [&str; 7] = [
    "trim",
    "upper",
    "lower",
    "title",
    "capitalize",
    "indent",
    "center",
];
/// Filters that always return a string: `~` between two of them (or string literals, or other
/// `~`) prints no value itself, so minijinja's spelling does not matter there.
const STRING_FILTERS: [&str; 16] = [
    "tojson",
    "string",
    "trim",
    "upper",
    "lower",
    "title",
    "capitalize",
    "indent",
    "center",
    "join",
    "replace",
    "format",
    "truncate",
    "safe",
    "e",
    "escape",
];

/// One edit of the source: at byte `at`, replace `len` bytes with `text`. `rank` orders edits at
/// the same offset: the outer expression opens first and closes last.
struct Edit {
    at: usize,
    rank: i64,
    len: usize,
    text: &'static str,
}

/// Rewrites the `~` (and, where `Markup` is made, `+`) operators of `source` into calls; `None`
/// when there is nothing to rewrite or the source does not parse (compiling it then reports the
/// error).
pub(crate) fn rewrite_operators(source: &str, syntax: SyntaxConfig) -> Option<String> {
    // Markup filters, `~` and `+` chains need a `|`, `~` or `+` in the source.
    if !source.contains(['~', '|', '+']) {
        return None;
    }
    let tree = parse(source, "<rewrite>", syntax).ok()?;
    let mut finder = Finder {
        source,
        markup: false,
        adds: false,
        sets: Vec::new(),
        markup_vars: Vec::new(),
        edits: Vec::new(),
    };
    finder.stmt(&tree, 0);
    if finder.markup {
        // Variables set to `Markup` (to a fixed point: one may be set from another).
        let sets = std::mem::take(&mut finder.sets);
        loop {
            let before = finder.markup_vars.len();
            for (name, expr) in &sets {
                if !finder.markup_vars.contains(name) && finder.markupish(expr) {
                    finder.markup_vars.push(name);
                }
            }
            if finder.markup_vars.len() == before {
                break;
            }
        }
        // A second pass, now rewriting the `+` that may see `Markup` too.
        finder.adds = true;
        finder.edits.clear();
        finder.stmt(&tree, 0);
    }
    if finder.edits.is_empty() {
        return None;
    }
    let mut edits = finder.edits;
    edits.sort_by_key(|e| (e.at, e.rank));
    let mut out = String::with_capacity(source.len() + edits.len() * 12);
    let mut copied = 0;
    for e in edits {
        out.push_str(source.get(copied..e.at)?);
        out.push_str(e.text);
        copied = e.at + e.len;
    }
    out.push_str(source.get(copied..)?);
    Some(out)
}

struct Finder<'s, 'a> {
    source: &'s str,
    /// Whether the template applies a filter that makes `Markup`.
    markup: bool,
    /// Whether `+` is rewritten as well as `~`.
    adds: bool,
    /// `{% set name = expr %}` statements (first pass).
    sets: Vec<(&'a str, &'a Expr<'a>)>,
    /// Variables that may hold `Markup`.
    markup_vars: Vec<&'a str>,
    edits: Vec<Edit>,
}

impl<'a> Finder<'_, 'a> {
    /// Whether `expr` may evaluate to `Markup` (seen statically: a markup filter, a variable
    /// set to one, a `+` or string filter applied to one).
    fn markupish(&self, expr: &Expr<'_>) -> bool {
        match expr {
            Expr::Filter(f) if MARKUP_FILTERS.contains(&f.name) => true,
            Expr::Filter(f) if MARKUP_KEEPING_FILTERS.contains(&f.name) => {
                f.expr.as_ref().is_some_and(|e| self.markupish(e))
            }
            Expr::BinOp(b) if matches!(b.op, BinOpKind::Add) => {
                self.markupish(&b.left) || self.markupish(&b.right)
            }
            Expr::IfExpr(i) => {
                self.markupish(&i.true_expr)
                    || i.false_expr.as_ref().is_some_and(|e| self.markupish(e))
            }
            Expr::Var(v) => self.markup_vars.contains(&v.id),
            _ => false,
        }
    }

    fn stmts(&mut self, stmts: &'a [Stmt<'a>], depth: i64) {
        for s in stmts {
            self.stmt(s, depth);
        }
    }

    fn stmt(&mut self, stmt: &'a Stmt<'a>, depth: i64) {
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children, depth),
            Stmt::EmitExpr(e) => {
                self.expr(&e.expr, depth);
                // A template that makes `Markup` keeps its `+` (rewritten or not) whole: the
                // first pass may not know that yet, the second pass does.
                if !self.markup {
                    self.split_printed_adds(&e.expr);
                }
            }
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.target, depth);
                self.expr(&f.iter, depth);
                if let Some(e) = &f.filter_expr {
                    self.expr(e, depth);
                }
                self.stmts(&f.body, depth);
                self.stmts(&f.else_body, depth);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr, depth);
                self.stmts(&i.true_body, depth);
                self.stmts(&i.false_body, depth);
            }
            Stmt::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    self.expr(target, depth);
                    self.expr(value, depth);
                }
                self.stmts(&w.body, depth);
            }
            Stmt::Set(s) => {
                if let Expr::Var(v) = &s.target {
                    self.sets.push((v.id, &s.expr));
                }
                self.expr(&s.target, depth);
                self.expr(&s.expr, depth);
            }
            Stmt::SetBlock(s) => {
                if let Some(f) = &s.filter {
                    self.expr(f, depth);
                }
                self.stmts(&s.body, depth);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled, depth);
                self.stmts(&a.body, depth);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter, depth);
                self.stmts(&f.body, depth);
            }
            Stmt::Block(b) => self.stmts(&b.body, depth),
            Stmt::Import(i) => self.expr(&i.expr, depth),
            Stmt::FromImport(i) => self.expr(&i.expr, depth),
            Stmt::Extends(e) => self.expr(&e.name, depth),
            Stmt::Include(i) => self.expr(&i.name, depth),
            Stmt::Macro(m) => self.macro_decl(m, depth),
            Stmt::CallBlock(c) => {
                self.call(&c.call, depth);
                self.macro_decl(&c.macro_decl, depth);
            }
            Stmt::Do(d) => self.call(&d.call, depth),
        }
    }

    fn macro_decl(&mut self, m: &'a ast::Macro<'a>, depth: i64) {
        for e in m.args.iter().chain(&m.defaults) {
            self.expr(e, depth);
        }
        self.stmts(&m.body, depth);
    }

    fn call(&mut self, c: &'a ast::Call<'a>, depth: i64) {
        self.expr(&c.expr, depth);
        self.args(&c.args, depth);
    }

    fn args(&mut self, args: &'a [CallArg<'a>], depth: i64) {
        for a in args {
            match a {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e, depth),
            }
        }
    }

    fn expr(&mut self, expr: &'a Expr<'a>, depth: i64) {
        match expr {
            Expr::Var(_) | Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr, depth);
                for e in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(e, depth);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr, depth),
            Expr::BinOp(b) => {
                let function = match b.op {
                    // Two `Markup` operands make `Markup` in minijinja, a plain `str` in jinja2.
                    BinOpKind::Concat
                        if !(surely_str(&b.left) && surely_str(&b.right))
                            || (self.adds
                                && self.markupish(&b.left)
                                && self.markupish(&b.right)) =>
                    {
                        Some((CAT, '~'))
                    }
                    BinOpKind::Add
                        if self.adds && (self.markupish(&b.left) || self.markupish(&b.right)) =>
                    {
                        Some((ADD, '+'))
                    }
                    _ => None,
                };
                let inner = if function.is_some() { depth + 1 } else { depth };
                self.expr(&b.left, inner);
                self.expr(&b.right, inner);
                if let Some((name, op)) = function {
                    self.binop(expr, &b.left, &b.right, name, op, depth);
                }
            }
            Expr::Compare(c) => {
                self.expr(&c.expr, depth);
                for op in &c.ops {
                    self.expr(&op.expr, depth);
                }
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr, depth);
                self.expr(&i.true_expr, depth);
                if let Some(e) = &i.false_expr {
                    self.expr(e, depth);
                }
            }
            Expr::Filter(f) => {
                self.markup |= MARKUP_FILTERS.contains(&f.name);
                if let Some(e) = &f.expr {
                    self.expr(e, depth);
                }
                self.args(&f.args, depth);
            }
            Expr::Test(t) => {
                self.expr(&t.expr, depth);
                self.args(&t.args, depth);
            }
            Expr::GetAttr(g) => self.expr(&g.expr, depth),
            Expr::GetItem(g) => {
                self.expr(&g.expr, depth);
                self.expr(&g.subscript_expr, depth);
            }
            Expr::Call(c) => self.call(c, depth),
            Expr::List(l) => l.items.iter().for_each(|e| self.expr(e, depth)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| self.expr(e, depth)),
            Expr::Map(m) => {
                for e in m.keys.iter().chain(&m.values) {
                    self.expr(e, depth);
                }
            }
        }
    }

    /// `{{ 'lit' + a + b }}` becomes `{{ 'lit' }}{{ a|__kiln_str }}{{ b|__kiln_str }}` when the
    /// chain's first operand is a string literal and only blanks surround each `+`.
    fn split_printed_adds(&mut self, expr: &Expr<'_>) {
        let mut operands = Vec::new();
        let mut node = expr;
        while let Expr::BinOp(b) = node {
            if !matches!(b.op, BinOpKind::Add) {
                break;
            }
            operands.push(&b.right);
            node = &b.left;
        }
        let Expr::Const(first) = node else {
            return;
        };
        if operands.is_empty() || first.value.kind() != ValueKind::String {
            return;
        }
        operands.reverse();
        let mut edits = Vec::with_capacity(operands.len() * 2);
        let mut left_end = node.span().end_offset as usize;
        for operand in operands {
            let (start, end) = (expr_start(operand), operand.span().end_offset as usize);
            let Some(gap) = self.source.get(left_end..start) else {
                return;
            };
            if gap.trim() != "+" {
                return; // brackets or comments between the operands
            }
            let op_at = left_end + gap.find('+').unwrap_or_default();
            edits.push(Edit {
                at: op_at,
                rank: 0,
                len: 1,
                text: "}}{{",
            });
            if !surely_str(operand) {
                edits.push(Edit {
                    at: end,
                    rank: i64::MAX,
                    len: 0,
                    text: "|__kiln_str",
                });
            }
            left_end = end;
        }
        self.edits.extend(edits);
    }

    /// `left op right` (spanning `whole`) becomes `name(left , right)`.
    fn binop(
        &mut self,
        whole: &Expr<'_>,
        left: &Expr<'_>,
        right: &Expr<'_>,
        name: &'static str,
        op: char,
        depth: i64,
    ) {
        let span = whole.span();
        let (start, end) = (span.start_offset as usize, span.end_offset as usize);
        let (gap_start, gap_end) = (
            left.span().end_offset as usize,
            right.span().start_offset as usize,
        );
        // Between the operands there are only brackets closing the left one, blanks and the
        // operator.
        let Some(op_at) = self
            .source
            .get(gap_start..gap_end)
            .and_then(|gap| gap.find(op))
            .map(|i| gap_start + i)
        else {
            return;
        };
        let open = match name {
            CAT => "__kiln_cat(",
            _ => "__kiln_add(",
        };
        self.edits.push(Edit {
            at: start,
            rank: depth,
            len: 0,
            text: open,
        });
        self.edits.push(Edit {
            at: op_at,
            rank: 0,
            len: 1,
            text: ",",
        });
        self.edits.push(Edit {
            at: end,
            rank: -depth,
            len: 0,
            text: ")",
        });
    }
}

/// Where `expr` starts in the source: a filter's or test's span starts at its name, after the
/// value it applies to.
fn expr_start(expr: &Expr<'_>) -> usize {
    let own = expr.span().start_offset as usize;
    let inner = match expr {
        Expr::Filter(f) => f.expr.as_ref().map(expr_start),
        Expr::Test(t) => Some(expr_start(&t.expr)),
        Expr::GetAttr(g) => Some(expr_start(&g.expr)),
        Expr::GetItem(g) => Some(expr_start(&g.expr)),
        Expr::Slice(s) => Some(expr_start(&s.expr)),
        Expr::Call(c) => Some(expr_start(&c.expr)),
        _ => None,
    };
    inner.map_or(own, |i| i.min(own))
}

/// Whether `expr` is a string whatever the inputs: a string literal, a string filter's result, a
/// concatenation.
fn surely_str(expr: &Expr<'_>) -> bool {
    match expr {
        Expr::Const(c) => c.value.kind() == ValueKind::String,
        Expr::Filter(f) => STRING_FILTERS.contains(&f.name),
        Expr::BinOp(b) => matches!(b.op, BinOpKind::Concat),
        _ => false,
    }
}

/// An operand of a split `+` chain: a string, as `str + x` needs in jinja2.
pub(crate) fn strict_str(value: Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        Ok(value)
    } else {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "can only concatenate str (not \"{}\") to str",
                py_type_name(&value)
            ),
        ))
    }
}

/// jinja2's `a ~ b` with auto-escaping off: `str(a) + str(b)`, a plain string.
pub(crate) fn cat(state: &State, a: &Value, b: &Value) -> Result<Value, Error> {
    if let (Some(x), Some(y)) = (plain_str(a), plain_str(b)) {
        ensure_bytes(state, "~", x.len() + y.len())?;
        let mut out = String::with_capacity(x.len() + y.len());
        out.push_str(x);
        out.push_str(y);
        return Ok(Value::from(out));
    }
    let mut out = String::new();
    python::py_str(&mut out, a)?;
    python::py_str(&mut out, b)?;
    ensure_bytes(state, "~", out.len())?;
    Ok(Value::from(out))
}

/// jinja2's `a + b` in a template that makes `Markup`: when a side is `Markup` (a safe string),
/// the other side must be a string and is HTML-escaped unless it is `Markup` too; otherwise
/// Python's `+` on strings, numbers and lists.
pub(crate) fn add(state: &State, a: &Value, b: &Value) -> Result<Value, Error> {
    let is_str = |v: &Value| v.kind() == ValueKind::String;
    if (a.is_safe() || b.is_safe()) && is_str(a) && is_str(b) {
        let (x, y) = (
            a.as_str().unwrap_or_default(),
            b.as_str().unwrap_or_default(),
        );
        ensure_bytes(state, "+", (x.len() + y.len()).saturating_mul(6))?;
        let mut out = String::with_capacity(x.len() + y.len());
        for (v, s) in [(a, x), (b, y)] {
            if v.is_safe() {
                out.push_str(s);
            } else {
                escape_html(&mut out, s);
            }
        }
        return Ok(Value::from_safe_string(out));
    }
    if is_str(a) && is_str(b) {
        let (x, y) = (
            a.as_str().unwrap_or_default(),
            b.as_str().unwrap_or_default(),
        );
        ensure_bytes(state, "+", x.len() + y.len())?;
        return Ok(Value::from(format!("{x}{y}")));
    }
    let unsupported = || {
        Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "unsupported operand type(s) for +: '{}' and '{}'",
                if a.is_safe() {
                    "Markup"
                } else {
                    py_type_name(a)
                },
                if b.is_safe() {
                    "Markup"
                } else {
                    py_type_name(b)
                }
            ),
        )
    };
    match (a.kind(), b.kind()) {
        (ValueKind::Number | ValueKind::Bool, ValueKind::Number | ValueKind::Bool) => {
            let int = |v: &Value| {
                if v.kind() == ValueKind::Bool {
                    Some(i128::from(v.is_true()))
                } else if v.is_integer() {
                    i128::try_from(v.clone()).ok()
                } else {
                    None
                }
            };
            match (int(a), int(b)) {
                (Some(x), Some(y)) => x.checked_add(y).map(Value::from).ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "integer overflow in +")
                }),
                _ => {
                    let x = f64::try_from(a.clone()).map_err(|_| unsupported())?;
                    let y = f64::try_from(b.clone()).map_err(|_| unsupported())?;
                    Ok(Value::from(x + y))
                }
            }
        }
        (ValueKind::Seq, ValueKind::Seq) => {
            let mut items: Vec<Value> = match seq_items(a) {
                Some(items) => items.to_vec(),
                None => a.try_iter()?.collect(),
            };
            items.extend(b.try_iter()?);
            Ok(Value::from(items))
        }
        _ => Err(unsupported()),
    }
}

fn plain_str(v: &Value) -> Option<&str> {
    v.as_str().filter(|_| v.kind() == ValueKind::String)
}

/// markupsafe's `escape`: `&`, `<`, `>`, `'` and `"`.
fn escape_html(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(src: &str) -> Option<String> {
        rewrite_operators(src, SyntaxConfig::default())
    }

    #[test]
    fn concatenations_become_calls() {
        assert_eq!(
            rewrite("{{ a ~ b ~ c }}").unwrap(),
            "{{ __kiln_cat(__kiln_cat(a , b) , c) }}"
        );
        assert_eq!(
            rewrite("{{ (x + 1) ~ (y) }}{{ f(a ~ b, c) }}").unwrap(),
            "{{ __kiln_cat((x + 1) , (y)) }}{{ f(__kiln_cat(a , b), c) }}"
        );
        assert_eq!(rewrite("{{ a + b }}{# ~ #}"), None);
        // Nothing but strings: left alone.
        assert_eq!(
            rewrite("{{ 'a' ~ x ~ 'b' }}").unwrap(),
            "{{ __kiln_cat('a' , x) ~ 'b' }}"
        );
        assert_eq!(rewrite("{{ 'a' ~ (x | tojson) }}"), None);
        assert_eq!(rewrite("{{ a ~ }}"), None);
    }

    #[test]
    fn printed_additions_from_a_string_literal_are_printed_one_by_one() {
        assert_eq!(
            rewrite("{{- '<' + m['role'] + '>\\n' + m.content | trim + '.' }}").unwrap(),
            "{{- '<' }}{{ m['role']|__kiln_str }}{{ '>\\n' }}{{ m.content | trim }}{{ '.' }}"
        );
        // Not from a literal, brackets, not printed, or in a template that makes `Markup`.
        assert_eq!(
            rewrite("{{ a + 'b' }}{{ 'a' + (b + c) }}{% set x = 'a' + b %}"),
            None
        );
        assert_eq!(rewrite("{{ 'a' + b }}{{ c|safe }}"), None);
    }

    #[test]
    fn split_additions_render_like_concatenation() {
        let mut env = crate::env::new_environment();
        let src = "{{- 'a' + x + '-' + y|trim -}}";
        env.add_template_owned("t", rewrite(src).unwrap()).unwrap();
        let t = env.get_template("t").unwrap();
        let ok = t
            .render(minijinja::context! { x => "b", y => " c " })
            .unwrap();
        assert_eq!(ok, "ab-c");
        // jinja2: `str + int` and `str + None` are TypeErrors.
        for bad in [minijinja::Value::from(1), minijinja::Value::from(())] {
            let err = t
                .render(minijinja::context! { x => bad, y => "c" })
                .unwrap_err();
            assert!(
                err.to_string().contains("can only concatenate str"),
                "{err}"
            );
        }
    }

    #[test]
    fn additions_become_calls_where_markup_is_made() {
        assert_eq!(
            rewrite("{{ 'a'|safe + b ~ c }}").unwrap(),
            "{{ __kiln_add('a'|safe , __kiln_cat(b , c)) }}"
        );
        // Only a `+` that may see `Markup` is rewritten.
        assert_eq!(
            rewrite("{{ a + b }}{% set m = 'x'|safe %}{{ m + c }}{{ (m|trim) + 1 }}").unwrap(),
            "{{ a + b }}{% set m = 'x'|safe %}{{ __kiln_add(m , c) }}{{ __kiln_add((m|trim) , 1) }}"
        );
        assert_eq!(
            rewrite("{{ a ~ b + c }}").unwrap(),
            "{{ __kiln_cat(a , b) + c }}"
        );
    }
}
