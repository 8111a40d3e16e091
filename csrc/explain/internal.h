/* What the explain module's files share. */
#ifndef QBERT_EXPLAIN_INTERNAL_H
#define QBERT_EXPLAIN_INTERNAL_H

/* Indices 0..n-1 ordered by |v| descending, ties in index order (Python's stable
 * sort): LIME's ranking of features, the reports' of words (lime.c). */
void qb_by_magnitude(const double *v, int n, int *order);

#endif
