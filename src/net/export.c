/* export.c — a trained model into its deployed form (deploy.h): every layer
 * adds itself through its table's export (layer.h): dense layers and
 * convolutions begin records, pools and gap are records of their own, batch
 * norm and activations complete the weighted record before them; then the
 * deployed network is checked and given its kernels. */
#include "internal.h"
#include "layer.h"

#include <string.h>

/* The packed format's limits, checked before anything is built. */
static int check_exportable(const fm_model *m)
{
    for (int l = 0; l < m->n_layers; l++)
        if (!fmi_layer_ops_of(m->layers[l].kind)->export)
            return fmi_error(FM_EUNSUPPORTED, "the packed format cannot hold layer %d (%s) of %s", l + 1,
                            fmi_layer_ops_of(m->layers[l].kind)->name, m->arch);
    if (m->config.preproc != FM_PRE_CENTER && m->config.preproc != FM_PRE_UNIT)
        return fmi_error(FM_EUNSUPPORTED, "the packed format stores a mean-subtraction input "
                                         "step; this model's GCN preprocessing cannot be packed");
    return FM_OK;
}

/* A network with maps (convolutions, pools) reads its input as the image it
 * was built for. */
static int has_maps(const fm_model *m)
{
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == FM_LAYER_CONV || m->layers[l].kind == FM_LAYER_POOL ||
            m->layers[l].kind == FM_LAYER_GAP)
            return 1;
    return 0;
}

int fm_deploy_from_model(const fm_model *m, fm_export_weights how, int height, int width,
                         int channels, fm_deploy **out)
{
    if (!out)
        return fmi_error(FM_EINVAL, "fm_deploy_from_model: NULL output");
    *out = NULL;
    if (!m)
        return fmi_error(FM_EINVAL, "fm_deploy_from_model: NULL model");
    if (how != FM_EXPORT_DET && how != FM_EXPORT_MEAN)
        return fmi_error(FM_EINVAL, "unknown export choice %d", (int)how);
    int rc = check_exportable(m);
    if (rc < 0 || (rc = fm_model_check_finite(m)) < 0)
        return rc;
    if (height == 0 && width == 0 && channels == 0) {
        height = m->in_h;
        width = m->in_w;
        channels = m->in_c;
    }
    if (height < 1 || width < 1 || channels < 1 ||
        (int64_t)height * width * channels != m->input_dim)
        return fmi_error(FM_EINVAL, "input shape %d x %d x %d does not hold the model's %d inputs",
                        height, width, channels, m->input_dim);
    if (has_maps(m) && (height != m->in_h || width != m->in_w || channels != m->in_c))
        return fmi_error(FM_EINVAL, "input shape %d x %d x %d: this convolutional model reads "
                        "%d x %d x %d images", height, width, channels, m->in_h, m->in_w, m->in_c);
    int records = 0; /* weighted layers, pools and gap each make one */
    for (int l = 0; l < m->n_layers; l++)
        records += fmi_layer_weighted(&m->layers[l]) || m->layers[l].kind == FM_LAYER_POOL ||
                   m->layers[l].kind == FM_LAYER_GAP;
    fm_deploy *d;
    rc = fmi_deploy_alloc(records, &d);
    if (rc < 0)
        return rc;
    d->height = height;
    d->width = width;
    d->channels = channels;
    d->input_dim = m->input_dim;
    d->classes = m->classes;
    d->source_mode = (uint32_t)m->config.weights;
    d->export_how = (uint32_t)how;
    d->input_mean = fmi_alloc((size_t)m->input_dim, sizeof *d->input_mean);
    if (!d->input_mean) {
        fm_deploy_free(d);
        return FM_ENOMEM;
    }
    memcpy(d->input_mean, m->input_mean, (size_t)m->input_dim * sizeof *d->input_mean);
    fm_export_state e = {m, how, d, -1, 0};
    for (int l = 0; l < m->n_layers && rc == FM_OK; l++)
        rc = fmi_layer_ops_of(m->layers[l].kind)->export(&e, &m->layers[l]);
    if (rc == FM_OK)
        rc = fmi_deploy_validate(d, "exported model");
    if (rc == FM_OK)
        rc = fmi_deploy_finish(d);
    if (rc < 0) {
        fm_deploy_free(d);
        return rc;
    }
    *out = d;
    return FM_OK;
}
