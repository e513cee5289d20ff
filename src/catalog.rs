//! The function catalog: every function's DataFusion [`Documentation`], rendered
//! as `docs/functions.md`. A test keeps the committed file in sync and runs every
//! SQL example in it.

use datafusion::logical_expr::Documentation;

/// What kind of SQL function an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FunctionKind {
    Scalar,
    Aggregate,
    Window,
    Table,
}

impl FunctionKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Aggregate => "aggregate",
            Self::Window => "window",
            Self::Table => "table",
        }
    }
}

/// One catalog entry.
#[derive(Debug, Clone)]
pub struct FunctionDoc {
    pub name: String,
    pub aliases: Vec<String>,
    pub kind: FunctionKind,
    pub documentation: Documentation,
}

/// Documentation of every function the crate registers, sorted by section then name.
/// A function without documentation is a bug; it is reported by name.
pub fn all_docs() -> Result<Vec<FunctionDoc>, String> {
    let mut out = Vec::new();
    let missing = |name: &str| format!("function '{name}' has no Documentation");
    for f in crate::all_scalar_functions() {
        out.push(FunctionDoc {
            name: f.name().to_string(),
            aliases: f.aliases().to_vec(),
            kind: FunctionKind::Scalar,
            documentation: f.documentation().ok_or_else(|| missing(f.name()))?.clone(),
        });
    }
    for f in crate::all_aggregate_functions() {
        out.push(FunctionDoc {
            name: f.name().to_string(),
            aliases: f.aliases().to_vec(),
            kind: FunctionKind::Aggregate,
            documentation: f.documentation().ok_or_else(|| missing(f.name()))?.clone(),
        });
    }
    for f in crate::all_window_functions() {
        out.push(FunctionDoc {
            name: f.name().to_string(),
            aliases: f.aliases().to_vec(),
            kind: FunctionKind::Window,
            documentation: f.documentation().ok_or_else(|| missing(f.name()))?.clone(),
        });
    }
    for (name, doc) in crate::all_table_function_docs() {
        out.push(FunctionDoc {
            name: name.to_string(),
            aliases: Vec::new(),
            kind: FunctionKind::Table,
            documentation: doc.clone(),
        });
    }
    out.sort_by(|a, b| {
        (a.documentation.doc_section.label, &a.name)
            .cmp(&(b.documentation.doc_section.label, &b.name))
    });
    Ok(out)
}

fn anchor(name: &str) -> String {
    name.to_lowercase()
}

/// Render the catalog as Markdown (the content of `docs/functions.md`).
pub fn render_markdown() -> Result<String, String> {
    let docs = all_docs()?;
    let mut md = String::new();
    md.push_str("<!-- Generated from each function's Documentation by `datafusion-marketing functions-doc`. Do not edit: the test `catalog::docs_are_in_sync` fails when this file is stale. -->\n\n");
    md.push_str("# Function catalog\n\n");
    md.push_str("Every SQL function that `datafusion_marketing::register_all` (or the `datafusion-marketing` CLI) adds to DataFusion. ");
    md.push_str("In the CLI, `SHOW FUNCTIONS LIKE 'rfm%'` lists them with their descriptions.\n\n");
    let mut section = "";
    for d in &docs {
        let label = d.documentation.doc_section.label;
        if label != section {
            md.push_str(&format!("\n## {label}\n\n"));
            for e in docs
                .iter()
                .filter(|e| e.documentation.doc_section.label == label)
            {
                md.push_str(&format!(
                    "- [`{}`](#{}) ({})\n",
                    e.name,
                    anchor(&e.name),
                    e.kind.label()
                ));
            }
            section = label;
        }
        let doc = &d.documentation;
        md.push_str(&format!("\n### `{}`\n\n", d.name));
        md.push_str(&format!("*{} function*\n\n", d.kind.label()));
        md.push_str(doc.description.trim());
        md.push_str("\n\n```sql\n");
        md.push_str(doc.syntax_example.trim());
        md.push_str("\n```\n");
        if let Some(args) = &doc.arguments {
            md.push_str("\n#### Arguments\n\n");
            for (name, desc) in args {
                md.push_str(&format!("- **{name}**: {desc}\n"));
            }
        }
        if !d.aliases.is_empty() {
            md.push_str(&format!("\n#### Aliases\n\n- {}\n", d.aliases.join("\n- ")));
        }
        if let Some(example) = &doc.sql_example {
            md.push_str("\n#### Example\n\n");
            md.push_str(example.trim());
            md.push('\n');
        }
        if let Some(related) = &doc.related_udfs {
            md.push_str(&format!(
                "\n#### Related functions\n\n{}\n",
                related
                    .iter()
                    .map(|r| format!("[`{r}`](#{})", anchor(r)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(md)
}

/// A runnable example extracted from a function's documentation: the SQL after
/// `> ` and the expected pretty-printed table that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocExample {
    pub function: String,
    pub sql: String,
    pub expected: String,
}

/// Every example in every function's documentation. Each must be a ```sql block
/// whose queries start with `> ` (continuation lines too) followed by the result table.
pub fn examples() -> Result<Vec<DocExample>, String> {
    let mut out = Vec::new();
    for d in all_docs()? {
        let Some(example) = &d.documentation.sql_example else {
            return Err(format!("function '{}' has no SQL example", d.name));
        };
        let body = example
            .trim()
            .strip_prefix("```sql")
            .and_then(|s| s.strip_suffix("```"))
            .ok_or_else(|| format!("the example of '{}' is not a ```sql block", d.name))?;
        let mut sql = String::new();
        let mut expected = String::new();
        let flush = |sql: &mut String, expected: &mut String, out: &mut Vec<DocExample>| {
            if !sql.is_empty() {
                out.push(DocExample {
                    function: d.name.clone(),
                    sql: std::mem::take(sql),
                    expected: std::mem::take(expected).trim_end().to_string(),
                });
            }
        };
        for line in body.lines() {
            if let Some(q) = line.strip_prefix("> ") {
                if !expected.is_empty() {
                    flush(&mut sql, &mut expected, &mut out);
                }
                sql.push_str(q);
                sql.push('\n');
            } else if !line.trim().is_empty() {
                expected.push_str(line);
                expected.push('\n');
            }
        }
        flush(&mut sql, &mut expected, &mut out);
    }
    Ok(out)
}
