//! Compiling an item's fields: a path or paths, a literal, a template, a
//! type or code table, and `append` (an object of fields kept as a history).
//! Errors point at the field's value in the file.

use std::ops::Range;

use toml::Spanned;

use super::compile::Compiler;
use super::convert::convert;
use super::plan::{FieldPlan, Source, Ty};
use super::spec::{FieldSpec, Ordered, Paths, Target, TargetSpec, TypeName};
use super::LoadErrorKind;

impl Compiler<'_> {
    pub(super) fn fields(&mut self, specs: &[(Spanned<String>, TargetSpec)]) -> Vec<FieldPlan> {
        let mut fields: Vec<FieldPlan> =
            specs.iter().filter_map(|(name, t)| self.field(name.get_ref(), &t.0)).collect();
        for (i, f) in fields.iter_mut().enumerate() {
            f.index = i;
        }
        fields
    }

    fn field(&mut self, name: &str, target: &Spanned<Target>) -> Option<FieldPlan> {
        let spec = match target.get_ref() {
            Target::Path(p) => {
                let path = self.path(&Spanned::new(target.span(), p.clone()))?;
                return Some(FieldPlan {
                    name: name.into(),
                    index: 0,
                    source: Source::Paths(vec![path]),
                    ty: Ty::String,
                    required: false,
                    when: None,
                });
            }
            Target::Paths(list) => {
                let paths = self.paths(&Paths(list.clone()));
                return Some(FieldPlan {
                    name: name.into(),
                    index: 0,
                    source: Source::Paths(paths),
                    ty: Ty::String,
                    required: false,
                    when: None,
                });
            }
            Target::Full(spec) => spec,
        };
        if let Some(members) = &spec.append {
            return self.append(name, target.span(), spec, members);
        }
        let ty = self.ty(name, target.span(), spec)?;
        let source = match (&spec.path, &spec.value, &spec.template) {
            (Some(p), None, None) => Source::Paths(self.paths(p)),
            (None, Some(v), None) => match convert(&ty, v.get_ref()) {
                Ok(value) => Source::Literal(value),
                Err(bad) => {
                    self.invalid(
                        v.span(),
                        format!("value {:?} of '{name}' {}: fix the value or the type", v.get_ref(), bad.why),
                    );
                    return None;
                }
            },
            (None, None, Some(t)) => Source::Template(self.template(t)),
            _ => {
                self.invalid(
                    target.span(),
                    format!("field '{name}' needs exactly one of path, value, template or append"),
                );
                return None;
            }
        };
        Some(FieldPlan {
            name: name.into(),
            index: 0,
            source,
            ty,
            required: spec.required.unwrap_or(false),
            when: spec.when.as_ref().and_then(|w| self.cond(w)),
        })
    }

    /// `{ append = { ward = "PV1-3.1", ... } }`: an object of fields, one entry of a history.
    fn append(
        &mut self,
        name: &str,
        span: Range<usize>,
        spec: &FieldSpec,
        members: &Ordered<TargetSpec>,
    ) -> Option<FieldPlan> {
        let extra = spec.path.is_some() || spec.value.is_some() || spec.template.is_some();
        if extra || spec.ty.is_some() || spec.table.is_some() || spec.strict.is_some() || spec.required.is_some() {
            self.invalid(
                span,
                format!(
                    "field '{name}' has append: only `when` may go beside it (each member has its own path and type)"
                ),
            );
            return None;
        }
        if let Some((inner, _)) = members.0.iter().find(|(_, t)| is_append(t)) {
            self.invalid(
                inner.span(),
                format!("append member '{}' has append: histories do not nest", inner.get_ref()),
            );
            return None;
        }
        let fields = self.fields(&members.0);
        let names = fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>().into();
        Some(FieldPlan {
            name: name.into(),
            index: 0,
            source: Source::Append { fields, names },
            ty: Ty::String,
            required: false,
            when: spec.when.as_ref().and_then(|w| self.cond(w)),
        })
    }

    fn ty(&mut self, name: &str, span: Range<usize>, spec: &FieldSpec) -> Option<Ty> {
        let given = spec.ty.as_ref().map(|t| *t.get_ref());
        let ty = match (given, &spec.table) {
            (None | Some(TypeName::Code), Some(table)) => {
                let Some(t) = self.tables.get(table.get_ref()) else {
                    let known: Vec<_> = self.tables.keys().map(String::as_str).collect();
                    self.error(
                        table.span().start,
                        LoadErrorKind::UnknownTable { name: table.get_ref().clone(), known: known.join(", ") },
                    );
                    return None;
                };
                Ty::Code { table: t.clone(), strict: spec.strict.unwrap_or(false) }
            }
            (Some(TypeName::Code), None) => {
                self.invalid(
                    span,
                    format!("field '{name}' has type = \"code\" but no table = \"NAME\" (a file in tables/)"),
                );
                return None;
            }
            (Some(other), Some(table)) => {
                self.invalid(
                    table.span(),
                    format!("field '{name}' has a table but type = \"{other:?}\": a table needs type = \"code\"")
                        .to_lowercase(),
                );
                return None;
            }
            (None | Some(TypeName::String), None) => Ty::String,
            (Some(TypeName::Date), None) => Ty::Date,
            (Some(TypeName::Timestamp), None) => Ty::Timestamp,
            (Some(TypeName::Number), None) => Ty::Number,
        };
        if spec.strict.is_some() && !matches!(ty, Ty::Code { .. }) {
            self.invalid(span, format!("field '{name}' has strict but no table: strict only applies to code tables"));
        }
        Some(ty)
    }
}

pub(super) fn is_append(t: &TargetSpec) -> bool {
    matches!(t.0.get_ref(), Target::Full(f) if f.append.is_some())
}
