/* loss.h — the two losses. Both return the mean loss over the batch, write the
 * gradient with respect to the outputs (already divided by the batch size) and
 * count misclassified examples (argmax, first index on ties). */
#ifndef FEWMUL_LOSS_H
#define FEWMUL_LOSS_H

#include "ledger.h"

#include <stdint.h>

/* Squared hinge summed over classes (the authors' L2-SVM):
 * L = 1/B sum_b sum_c max(0, 1 - t_bc y_bc)^2, t = +1 for the label, -1 otherwise. */
double fmi_loss_hinge(const float *y, const uint8_t *labels, int batch, int classes, float *dy,
                     int *errors);
/* Softmax cross-entropy: L = 1/B sum_b -log softmax(y_b)[label]. */
double fmi_loss_xent(const float *y, const uint8_t *labels, int batch, int classes, float *dy,
                    int *errors);
/* The same over `batch` rows of a larger minibatch of `norm` examples (a
 * rank's share): the loss and gradient are divided by norm, so the shares'
 * losses and gradients add up to the whole minibatch's. */
double fmi_loss_hinge_part(const float *y, const uint8_t *labels, int batch, int norm, int classes,
                          float *dy, int *errors);
double fmi_loss_xent_part(const float *y, const uint8_t *labels, int batch, int norm, int classes,
                         float *dy, int *errors);
/* argmax of each row; returns the number that differ from labels. */
int fmi_count_errors(const float *y, const uint8_t *labels, int batch, int classes);

/* Ledger declarations: the loss value and error count go to `forward`, the
 * gradient to `backward`. */
void fmi_loss_hinge_cost(const fm_cost *forward, const fm_cost *backward, int batch, int classes);
void fmi_loss_xent_cost(const fm_cost *forward, const fm_cost *backward, int batch, int classes);
void fmi_count_errors_cost(const fm_cost *cost, int batch, int classes);

#endif
