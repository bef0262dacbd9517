# The Keras functional API, with named layers, compiled and fitted at module level.
import keras
from keras import layers


def nin_block(x, width, kernel, stride, name):
    padding = "valid" if stride > 1 else "same"
    x = layers.Conv2D(width, kernel, strides=stride, padding=padding, activation="relu",
                      name=f"{name}_conv")(x)
    x = layers.Conv2D(width, 1, activation="relu", name=f"{name}_mlp1")(x)
    return layers.Conv2D(width, 1, activation="relu", name=f"{name}_mlp2")(x)


inputs = keras.Input((224, 224, 1))
x = nin_block(inputs, 96, 11, 4, "block1")
x = layers.MaxPooling2D(3, 2)(x)
x = nin_block(x, 256, 5, 1, "block2")
x = layers.MaxPooling2D(3, 2)(x)
x = nin_block(x, 384, 3, 1, "block3")
x = layers.MaxPooling2D(3, 2)(x)
x = layers.Dropout(0.5)(x)
x = nin_block(x, 10, 3, 1, "classes")
outputs = layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, outputs, name="nin")

model.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
(x_train, y_train), _ = keras.datasets.fashion_mnist.load_data()
model.fit(x_train, y_train, epochs=10)
