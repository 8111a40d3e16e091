/* BERT config: parsing a Hugging Face config.json (cJSON), presets, and writing
 * one back that transformers' AutoConfig / BertConfig loads. */
#include "qbert/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads an integer key. Absent: *out = dflt when optional, else an error. */
static qb_status get_int(const cJSON *root, const char *path, const char *key, int required,
                         int dflt, int lo, int *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return qb_fail(QB_EFORMAT, "%s: missing required field \"%s\" (an integer)", path, key);
        *out = dflt;
        return QB_OK;
    }
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || v != floor(v) || v < lo || v > 1e9)
        return qb_fail(QB_EFORMAT, "%s: field \"%s\" must be an integer >= %d", path, key, lo);
    *out = (int)v;
    return QB_OK;
}

static qb_status get_float(const cJSON *root, const char *path, const char *key, float dflt,
                           float lo, float hi, float *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        *out = dflt;
        return QB_OK;
    }
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi))
        return qb_fail(QB_EFORMAT, "%s: field \"%s\" must be a number in [%g, %g]", path, key, lo, hi);
    *out = (float)it->valuedouble;
    return QB_OK;
}

/* Reads an optional string key into buf (dflt when absent). */
static qb_status get_string(const cJSON *root, const char *path, const char *key, const char *dflt,
                            char *buf, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    const char *s = dflt;
    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it)) return qb_fail(QB_EFORMAT, "%s: field \"%s\" must be a string", path, key);
        s = it->valuestring;
    }
    if (strlen(s) >= cap) return qb_fail(QB_EFORMAT, "%s: field \"%s\" is too long", path, key);
    strcpy(buf, s);
    return QB_OK;
}

static qb_status set_label(qb_config *cfg, int id, const char *name)
{
    free(cfg->id2label[id]);
    cfg->id2label[id] = qb_strdup(name);
    return cfg->id2label[id] ? QB_OK : qb_fail(QB_ENOMEM, "cannot copy label name");
}

/* id2label ({"0": "positive", ...}) decides num_labels, as in transformers; then
 * label2id, when present, must agree with it. */
static qb_status parse_labels(const cJSON *root, const char *path, qb_config *cfg)
{
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(root, "id2label");
    const cJSON *label2id = cJSON_GetObjectItemCaseSensitive(root, "label2id");
    qb_status st;
    if (id2label && !cJSON_IsNull(id2label)) {
        if (!cJSON_IsObject(id2label))
            return qb_fail(QB_EFORMAT, "%s: field \"id2label\" must be an object {\"0\": \"name\", ...}", path);
        int n = cJSON_GetArraySize(id2label);
        if (n < 1 || n > QB_MAX_LABELS)
            return qb_fail(QB_EFORMAT, "%s: \"id2label\" has %d entries (expected 1..%d)", path, n, QB_MAX_LABELS);
        cfg->num_labels = n;
        const cJSON *it;
        cJSON_ArrayForEach(it, id2label) {
            char *end;
            long id = strtol(it->string, &end, 10);
            if (*it->string == '\0' || *end != '\0' || id < 0 || id >= n)
                return qb_fail(QB_EFORMAT, "%s: \"id2label\" key \"%s\" must be an integer in [0, %d)", path, it->string, n);
            if (!cJSON_IsString(it))
                return qb_fail(QB_EFORMAT, "%s: \"id2label\".\"%s\" must be a string", path, it->string);
            if (cfg->id2label[id])
                return qb_fail(QB_EFORMAT, "%s: \"id2label\" repeats id %ld", path, id);
            if ((st = set_label(cfg, (int)id, it->valuestring))) return st;
        }
    } else {
        if ((st = get_int(root, path, "num_labels", 0, 2, 1, &cfg->num_labels))) return st;
        if (cfg->num_labels > QB_MAX_LABELS)
            return qb_fail(QB_EFORMAT, "%s: \"num_labels\" %d is above the limit %d", path, cfg->num_labels, QB_MAX_LABELS);
        for (int i = 0; i < cfg->num_labels; i++) {
            char name[32];
            snprintf(name, sizeof name, "LABEL_%d", i);
            if ((st = set_label(cfg, i, name))) return st;
        }
    }
    if (label2id && !cJSON_IsNull(label2id)) {
        if (!cJSON_IsObject(label2id))
            return qb_fail(QB_EFORMAT, "%s: field \"label2id\" must be an object {\"name\": id, ...}", path);
        const cJSON *it;
        cJSON_ArrayForEach(it, label2id) {
            int id = cJSON_IsNumber(it) ? it->valueint : -1;
            if (id < 0 || id >= cfg->num_labels || strcmp(cfg->id2label[id], it->string) != 0)
                return qb_fail(QB_EFORMAT, "%s: \"label2id\".\"%s\" does not agree with \"id2label\"", path, it->string);
        }
    }
    return QB_OK;
}

qb_status qb_config_parse(const char *json, size_t len, const char *path, qb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return qb_fail(QB_EFORMAT, "%s: not valid JSON", path);
    qb_status st = QB_OK;
    char model_type[32], pos_type[32];
    if (!cJSON_IsObject(root)) {
        st = qb_fail(QB_EFORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    if ((st = get_string(root, path, "model_type", "bert", model_type, sizeof model_type))) goto done;
    if (strcmp(model_type, "bert") != 0) {
        st = qb_fail(QB_EUNSUPPORTED, "%s: \"model_type\" is \"%s\"; only \"bert\" is supported", path, model_type);
        goto done;
    }
    if ((st = get_int(root, path, "vocab_size", 1, 0, 1, &cfg->vocab_size)) ||
        (st = get_int(root, path, "hidden_size", 1, 0, 1, &cfg->hidden_size)) ||
        (st = get_int(root, path, "num_hidden_layers", 1, 0, 1, &cfg->num_layers)) ||
        (st = get_int(root, path, "num_attention_heads", 1, 0, 1, &cfg->num_heads)) ||
        (st = get_int(root, path, "intermediate_size", 1, 0, 1, &cfg->intermediate_size)) ||
        (st = get_int(root, path, "max_position_embeddings", 0, 512, 1, &cfg->max_position)) ||
        (st = get_int(root, path, "type_vocab_size", 0, 2, 1, &cfg->type_vocab_size)) ||
        (st = get_int(root, path, "pad_token_id", 0, 0, 0, &cfg->pad_token_id)) ||
        (st = get_float(root, path, "layer_norm_eps", 1e-12f, 0.0f, 1.0f, &cfg->layer_norm_eps)) ||
        (st = get_float(root, path, "initializer_range", 0.02f, 0.0f, 10.0f, &cfg->initializer_range)) ||
        (st = get_float(root, path, "hidden_dropout_prob", 0.1f, 0.0f, 1.0f, &cfg->hidden_dropout)) ||
        (st = get_float(root, path, "attention_probs_dropout_prob", 0.1f, 0.0f, 1.0f, &cfg->attention_dropout)) ||
        (st = get_string(root, path, "hidden_act", "gelu", cfg->hidden_act, sizeof cfg->hidden_act)) ||
        (st = get_string(root, path, "position_embedding_type", "absolute", pos_type, sizeof pos_type)))
        goto done;
    if (strcmp(cfg->hidden_act, "gelu") != 0) {
        st = qb_fail(QB_EUNSUPPORTED, "%s: \"hidden_act\" is \"%s\"; only \"gelu\" (exact erf) is supported", path, cfg->hidden_act);
        goto done;
    }
    if (strcmp(pos_type, "absolute") != 0) {
        st = qb_fail(QB_EUNSUPPORTED, "%s: \"position_embedding_type\" is \"%s\"; only \"absolute\" is supported", path, pos_type);
        goto done;
    }
    if (cfg->hidden_size % cfg->num_heads != 0) {
        st = qb_fail(QB_EFORMAT, "%s: \"hidden_size\" %d is not a multiple of \"num_attention_heads\" %d",
                     path, cfg->hidden_size, cfg->num_heads);
        goto done;
    }
    if (cfg->pad_token_id >= cfg->vocab_size) {
        st = qb_fail(QB_EFORMAT, "%s: \"pad_token_id\" %d is not below \"vocab_size\" %d", path, cfg->pad_token_id, cfg->vocab_size);
        goto done;
    }
    st = parse_labels(root, path, cfg);
done:
    cJSON_Delete(root);
    if (st) qb_config_free(cfg);
    return st;
}

qb_status qb_config_load(const char *path, qb_config *cfg)
{
    char *json;
    size_t len;
    qb_status st = qb_read_file(path, &json, &len);
    if (st) return st;
    st = qb_config_parse(json, len, path, cfg);
    free(json);
    return st;
}

qb_status qb_config_preset(const char *name, qb_config *cfg)
{
    static const char *const smsa_labels[] = {"positive", "neutral", "negative"};
    memset(cfg, 0, sizeof *cfg);
    if (strcmp(name, "indobert-base-p2") == 0) {
        /* The shape of indobenchmark/indobert-base-p2 (50000-row embedding). */
        *cfg = (qb_config){.vocab_size = 50000, .hidden_size = 768, .num_layers = 12, .num_heads = 12,
                           .intermediate_size = 3072, .max_position = 512, .type_vocab_size = 2};
    } else if (strcmp(name, "bert-tiny") == 0) {
        *cfg = (qb_config){.vocab_size = 30522, .hidden_size = 128, .num_layers = 2, .num_heads = 2,
                           .intermediate_size = 512, .max_position = 512, .type_vocab_size = 2};
    } else {
        return qb_fail(QB_EINVAL, "unknown preset \"%s\" (expected indobert-base-p2 or bert-tiny)", name);
    }
    cfg->num_labels = 3;
    cfg->layer_norm_eps = 1e-12f;
    cfg->initializer_range = 0.02f;
    cfg->hidden_dropout = cfg->attention_dropout = 0.1f;
    strcpy(cfg->hidden_act, "gelu");
    for (int i = 0; i < 3; i++) {
        qb_status st = set_label(cfg, i, smsa_labels[i]);
        if (st) {
            qb_config_free(cfg);
            return st;
        }
    }
    return QB_OK;
}

char *qb_config_to_json(const qb_config *c)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("BertForSequenceClassification"));
    cJSON_AddStringToObject(root, "model_type", "bert");
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(root, "num_hidden_layers", c->num_layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", c->num_heads);
    cJSON_AddNumberToObject(root, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->max_position);
    cJSON_AddNumberToObject(root, "type_vocab_size", c->type_vocab_size);
    cJSON_AddNumberToObject(root, "pad_token_id", c->pad_token_id);
    cJSON_AddNumberToObject(root, "layer_norm_eps", c->layer_norm_eps);
    cJSON_AddNumberToObject(root, "initializer_range", c->initializer_range);
    cJSON_AddNumberToObject(root, "hidden_dropout_prob", c->hidden_dropout);
    cJSON_AddNumberToObject(root, "attention_probs_dropout_prob", c->attention_dropout);
    cJSON_AddStringToObject(root, "hidden_act", c->hidden_act);
    cJSON_AddStringToObject(root, "position_embedding_type", "absolute");
    cJSON *id2label = cJSON_AddObjectToObject(root, "id2label");
    cJSON *label2id = cJSON_AddObjectToObject(root, "label2id");
    for (int i = 0; i < c->num_labels; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        cJSON_AddStringToObject(id2label, key, c->id2label[i]);
        cJSON_AddNumberToObject(label2id, c->id2label[i], i);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

void qb_config_free(qb_config *cfg)
{
    for (int i = 0; i < QB_MAX_LABELS; i++) {
        free(cfg->id2label[i]);
        cfg->id2label[i] = NULL;
    }
}

int qb_config_label_id(const qb_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->num_labels; i++)
        if (cfg->id2label[i] && strcmp(cfg->id2label[i], name) == 0) return i;
    return -1;
}
