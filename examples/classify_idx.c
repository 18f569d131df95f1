/* classify_idx.c — the smallest deployment of a fewmul network: load a packed
 * model (written by `fewmul train --out`), read an IDX image file and its
 * label file, predict every image and print the accuracy. It uses only the
 * public header and the library, as a program of one's own would.
 *
 *   classify_idx MODEL IMAGES LABELS
 *   classify_idx bc.fmp t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
 *
 * Exit status: 0 success, 1 failure (a file, the library), 2 usage error. */
#include <fewmul.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL IMAGES LABELS\n", argc > 0 ? argv[0] : "classify_idx");
        return 2;
    }
    fm_deploy *model = NULL;
    fm_images images = {0};
    uint8_t *classes = NULL;
    int status = 1;

    /* The kernel variant is chosen at load: FEWMUL_KERNELS, else the best
     * this CPU supports. */
    if (fm_deploy_load(argv[1], &model) < 0 || fm_idx_read(argv[2], argv[3], &images) < 0) {
        fprintf(stderr, "classify_idx: %s\n", fm_last_error());
        goto done;
    }
    /* The model expects height x width x channels pixels per image, as it
     * was trained on; anything else would be read as garbage. */
    int height, width, channels;
    int inputs = fm_deploy_input_shape(model, &height, &width, &channels);
    if ((long long)images.height * images.width * images.channels != inputs) {
        fprintf(stderr, "classify_idx: %s holds %dx%dx%d images, the model expects %dx%dx%d\n",
                argv[2], images.height, images.width, images.channels, height, width, channels);
        goto done;
    }
    classes = malloc(images.count > 0 ? (size_t)images.count : 1);
    if (!classes) {
        fprintf(stderr, "classify_idx: out of memory\n");
        goto done;
    }
    /* All images in one call; threads <= 0 uses every core. */
    if (fm_deploy_predict(model, images.pixels, images.count, 0, classes, NULL) < 0) {
        fprintf(stderr, "classify_idx: %s\n", fm_last_error());
        goto done;
    }
    long correct = 0;
    for (int32_t i = 0; i < images.count; i++)
        correct += classes[i] == images.labels[i];
    printf("%s: %ld of %d images correct, accuracy %.2f%% (%s, %s kernels)\n", argv[1], correct,
           (int)images.count, images.count ? 100.0 * (double)correct / images.count : 0.0,
           fm_deploy_describe(model), fm_deploy_kernels(model));
    status = 0;
done:
    free(classes);
    fm_images_free(&images);
    fm_deploy_free(model);
    return status;
}
