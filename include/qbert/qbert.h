/* qbert public API: include this one header to get every module. */
#ifndef QBERT_H
#define QBERT_H

#include "qbert/core.h"
#include "qbert/data.h"
#include "qbert/engine.h"
#include "qbert/io.h"
#include "qbert/metrics.h"
#include "qbert/model.h"
#include "qbert/tensor.h"
#include "qbert/tokenizer.h"

#endif
