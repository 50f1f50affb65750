//! The variables a template reads without declaring them, from its syntax
//! tree alone.
//!
//! minijinja's `Template::undeclared_variables` needs a compiled template,
//! and compiling folds constant expressions: `("a" * 10**8) ~ ...` would be
//! built while a workflow is validated. This is minijinja 2.24's
//! `find_undeclared` (src/compiler/meta.rs, Apache-2.0) with nested
//! attribute paths, run on the parsed tree.

use std::collections::HashSet;

use minijinja::machinery::ast;

/// `name` or `name.attr.attr` for every variable read before any
/// assignment that could declare it.
pub(super) fn undeclared_variables(tree: &ast::Stmt<'_>) -> HashSet<String> {
    let mut tracker = Tracker {
        nested: HashSet::new(),
        assigned: vec![HashSet::new()],
    };
    tracker.walk(tree);
    tracker.nested
}

struct Tracker<'a> {
    nested: HashSet<String>,
    assigned: Vec<HashSet<&'a str>>,
}

impl<'a> Tracker<'a> {
    fn is_assigned(&self, name: &str) -> bool {
        self.assigned.iter().any(|scope| scope.contains(name))
    }

    fn assign(&mut self, name: &'a str) {
        if let Some(scope) = self.assigned.last_mut() {
            scope.insert(name);
        }
    }

    fn push(&mut self) {
        self.assigned.push(HashSet::new());
    }

    fn pop(&mut self) {
        self.assigned.pop();
    }

    fn scoped(&mut self, body: &[ast::Stmt<'a>]) {
        self.push();
        body.iter().for_each(|s| self.walk(s));
        self.pop();
    }

    fn expr_opt(&mut self, expr: &Option<ast::Expr<'a>>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    fn call_arg(&mut self, arg: &ast::CallArg<'a>) {
        match arg {
            ast::CallArg::Pos(e)
            | ast::CallArg::Kwarg(_, e)
            | ast::CallArg::PosSplat(e)
            | ast::CallArg::KwargSplat(e) => self.expr(e),
        }
    }

    fn macro_decl(&mut self, m: &ast::Macro<'a>) {
        // `caller` only exists in a call block's macro, but that cannot be
        // told apart here (minijinja errs the same way).
        self.assign("caller");
        m.args.iter().for_each(|arg| self.assign_target(arg));
        m.defaults.iter().for_each(|e| self.expr(e));
        m.body.iter().for_each(|s| self.walk(s));
    }

    fn assign_target(&mut self, target: &ast::Expr<'a>) {
        match target {
            ast::Expr::Var(var) => self.assign(var.id),
            ast::Expr::List(list) => list.items.iter().for_each(|x| self.assign_target(x)),
            _ => {}
        }
    }

    fn expr(&mut self, expr: &ast::Expr<'a>) {
        match expr {
            ast::Expr::Var(var) => {
                if !self.is_assigned(var.id) {
                    self.nested.insert(var.id.to_owned());
                }
            }
            ast::Expr::Const(_) => {}
            ast::Expr::UnaryOp(e) => self.expr(&e.expr),
            ast::Expr::BinOp(e) => {
                self.expr(&e.left);
                self.expr(&e.right);
            }
            ast::Expr::Compare(e) => {
                self.expr(&e.expr);
                e.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            ast::Expr::IfExpr(e) => {
                self.expr(&e.test_expr);
                self.expr(&e.true_expr);
                self.expr_opt(&e.false_expr);
            }
            ast::Expr::Filter(e) => {
                self.expr_opt(&e.expr);
                e.args.iter().for_each(|a| self.call_arg(a));
            }
            ast::Expr::Test(e) => {
                self.expr(&e.expr);
                e.args.iter().for_each(|a| self.call_arg(a));
            }
            ast::Expr::GetAttr(e) => {
                // A chain of attributes on an undeclared variable is
                // reported as one dotted path.
                let mut attrs = vec![e.name];
                let mut ptr = &e.expr;
                loop {
                    match ptr {
                        ast::Expr::Var(var) => {
                            if self.is_assigned(var.id) {
                                break;
                            }
                            let mut path = var.id.to_owned();
                            for attr in attrs.iter().rev() {
                                path.push('.');
                                path.push_str(attr);
                            }
                            self.nested.insert(path);
                            return;
                        }
                        ast::Expr::GetAttr(inner) => {
                            attrs.push(inner.name);
                            ptr = &inner.expr;
                        }
                        _ => break,
                    }
                }
                self.expr(&e.expr);
            }
            ast::Expr::GetItem(e) => {
                self.expr(&e.expr);
                self.expr(&e.subscript_expr);
            }
            ast::Expr::Slice(e) => {
                // minijinja does not look at the sliced value either.
                self.expr_opt(&e.start);
                self.expr_opt(&e.stop);
                self.expr_opt(&e.step);
            }
            ast::Expr::Call(e) => {
                self.expr(&e.expr);
                e.args.iter().for_each(|a| self.call_arg(a));
            }
            ast::Expr::List(e) => e.items.iter().for_each(|x| self.expr(x)),
            ast::Expr::Map(e) => e.keys.iter().zip(&e.values).for_each(|(k, v)| {
                self.expr(k);
                self.expr(v);
            }),
        }
    }

    fn walk(&mut self, stmt: &ast::Stmt<'a>) {
        match stmt {
            ast::Stmt::Template(s) => {
                self.assign("self");
                s.children.iter().for_each(|x| self.walk(x));
            }
            ast::Stmt::EmitExpr(s) => self.expr(&s.expr),
            ast::Stmt::EmitRaw(_) => {}
            ast::Stmt::ForLoop(s) => {
                self.push();
                self.assign("loop");
                self.expr(&s.iter);
                self.assign_target(&s.target);
                self.expr_opt(&s.filter_expr);
                s.body.iter().for_each(|x| self.walk(x));
                self.pop();
                self.scoped(&s.else_body);
            }
            ast::Stmt::IfCond(s) => {
                self.expr(&s.expr);
                self.scoped(&s.true_body);
                self.scoped(&s.false_body);
            }
            ast::Stmt::WithBlock(s) => {
                self.push();
                for (target, value) in &s.assignments {
                    self.assign_target(target);
                    self.expr(value);
                }
                s.body.iter().for_each(|x| self.walk(x));
                self.pop();
            }
            ast::Stmt::Set(s) => {
                self.assign_target(&s.target);
                self.expr(&s.expr);
            }
            ast::Stmt::AutoEscape(s) => self.scoped(&s.body),
            ast::Stmt::FilterBlock(s) => self.scoped(&s.body),
            ast::Stmt::SetBlock(s) => {
                self.assign_target(&s.target);
                self.scoped(&s.body);
            }
            ast::Stmt::Block(s) => {
                self.push();
                self.assign("super");
                s.body.iter().for_each(|x| self.walk(x));
                self.pop();
            }
            ast::Stmt::Extends(_) | ast::Stmt::Include(_) => {}
            ast::Stmt::Import(s) => self.assign_target(&s.name),
            ast::Stmt::FromImport(s) => {
                for (name, alias) in &s.names {
                    self.assign_target(alias.as_ref().unwrap_or(name));
                }
            }
            ast::Stmt::Macro(s) => {
                self.assign(s.name);
                self.push();
                self.macro_decl(s);
                self.pop();
            }
            ast::Stmt::CallBlock(s) => {
                self.expr(&s.call.expr);
                s.call.args.iter().for_each(|a| self.call_arg(a));
                self.push();
                self.macro_decl(&s.macro_decl);
                self.pop();
            }
            ast::Stmt::Do(s) => {
                self.expr(&s.call.expr);
                s.call.args.iter().for_each(|a| self.call_arg(a));
            }
        }
    }
}
